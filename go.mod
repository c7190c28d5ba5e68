module github.com/fleetkv/fleetkv

go 1.26.0

require (
	github.com/cockroachdb/datadriven v1.0.3
	github.com/dgryski/go-metro v0.0.0-20250106013310-edb8663e5e33
	github.com/puzpuzpuz/xsync/v3 v3.5.1
	golang.org/x/sys v0.49.0
)

require github.com/pmezard/go-difflib v1.0.0 // indirect
