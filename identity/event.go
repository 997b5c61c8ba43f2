package identity

import "github.com/gatehouse-filter/gatehouse/reports"

// Describe fills ev's Display, Year and Class from e (when e names ev's
// user) and returns the name of the source that named ev's person or
// device: ev.User, ev.Device and ev.Client are as the front door decided
// them (a user from a proxy login the table does not hold is "login"; a
// device name other than the lease's is the static device list's). It
// does not allocate.
func Describe(ev *reports.Event, e *Entry) string {
	switch {
	case ev.User != "" && e != nil && e.User == ev.User:
		ev.Display, ev.Year, ev.Class = e.Display, e.Year, e.Class
		return e.Source.String()
	case ev.User != "":
		return SourceLogin.String()
	case ev.Device != "" && e != nil && e.Device == ev.Device:
		return SourceLease.String()
	case ev.Device != "":
		return SourceStatic.String()
	}
	return SourceAddress.String()
}
