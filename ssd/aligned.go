package ssd

import "unsafe"

// AlignedBuffer returns a zeroed buffer of n bytes whose address is a
// multiple of SectorSize, as O_DIRECT I/O requires. Go's heap does not move
// objects, so slicing an over-allocated buffer at the aligned offset keeps
// its alignment for its whole life.
func AlignedBuffer(n int) []byte {
	b := make([]byte, n+SectorSize)
	skip := (SectorSize - int(addrOf(b)%SectorSize)) % SectorSize
	return b[skip : skip+n : skip+n]
}

// addrOf returns the address of p's first byte.
func addrOf(p []byte) uintptr { return uintptr(unsafe.Pointer(unsafe.SliceData(p))) }
