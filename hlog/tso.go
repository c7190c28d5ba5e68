//go:build !amd64

package hlog

// The record seqlock (unsafe.go) copies values with plain loads and stores
// between atomic loads and stores of the header words. That is correct under
// x86-64's total store order, where neither loads nor stores are reordered
// with each other, and not on weaker memory models (arm64 may satisfy the
// value's loads after the re-check). Until values are copied as atomic words
// there, the package refuses to build elsewhere:
var _ = hlogRequiresAmd64TotalStoreOrder
