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
