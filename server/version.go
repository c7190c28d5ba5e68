package server

import "runtime/debug"

// Version is what `fleetkv version`, INFO and the logs report: set at link
// time (make bin: -X github.com/fleetkv/fleetkv/server.Version=...), else
// the module version or the VCS revision the binary was built from.
var Version string

func init() {
	if Version == "" {
		Version = buildVersion()
	}
}

func buildVersion() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	rev, dirty := "", ""
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				dirty = "+dirty"
			}
		}
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if rev == "" {
		return "devel"
	}
	return rev + dirty
}
