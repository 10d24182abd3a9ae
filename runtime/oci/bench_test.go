package oci

import "testing"

func BenchmarkProtectedSelf(b *testing.B) {
	for i := 0; i < b.N; i++ {
		_, done, err := protectedSelf()
		if err != nil {
			b.Fatal(err)
		}
		done()
	}
}

func BenchmarkMemfdSelf(b *testing.B) {
	for i := 0; i < b.N; i++ {
		_, done, err := memfdSelf()
		if err != nil {
			b.Fatal(err)
		}
		done()
	}
}

// BenchmarkStartTrue measures the OCI layer alone: a container's init started
// (all of Docker's namespaces, mounts, masked paths) and `true` run to its end.
func BenchmarkStartTrue(b *testing.B) {
	root := makeRootfsB(b)
	for i := 0; i < b.N; i++ {
		p, err := Start(&InitConfig{Spec: testSpec(root, "true"), Rootfs: root}, Stdio{}, Options{})
		if err != nil {
			b.Fatal(err)
		}
		if code, _ := p.Wait(); code != 0 {
			b.Fatalf("exit %d", code)
		}
	}
}
