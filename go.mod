module github.com/fleetkv/fleetkv

go 1.26.0

require golang.org/x/sys v0.49.0

require (
	github.com/dgryski/go-metro v0.0.0-20250106013310-edb8663e5e33 // indirect
	github.com/puzpuzpuz/xsync/v3 v3.5.1 // indirect
)
