package image
import "testing"
func FuzzZZ(f *testing.F) {
	f.Add([]byte("x"))
	f.Fuzz(func(t *testing.T, data []byte) {
		_ = t.TempDir()
	})
}
func FuzzZY(f *testing.F) {
	f.Add([]byte("x"))
	f.Fuzz(func(t *testing.T, data []byte) {
		_ = scriptLayer(t, string(data))
	})
}
