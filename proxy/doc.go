// Package proxy is the home of Gatehouse's front doors: the filtering DNS
// resolver (proxy/dns) and the HTTP/HTTPS proxy (proxy/http). Both ask the
// same policy engine and send events to the same sink. The front doors
// arrive in their own issues; this package holds nothing yet.
package proxy
