package tlsinspect

import (
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"strings"
	"time"

	"github.com/gatehouse-filter/gatehouse/health"
)

// ExpiryWarning is how long before the CA expires the health check starts
// reporting it.
const ExpiryWarning = 30 * 24 * time.Hour

// HealthCheck reports the CA at certFile(): nothing when there is no CA
// (inspection is opt-in) or it is valid for more than ExpiryWarning; a
// problem when it expires within that, has expired, or cannot be read.
// loadErr, if set, returns why the running proxy could not load the CA
// (e.g. its key), which is a problem too.
func HealthCheck(certFile func() string, loadErr func() error, now func() time.Time) health.Check {
	return func() []health.Problem {
		p := func(msg string, args ...any) []health.Problem {
			return []health.Problem{{Key: "proxy/ca", Part: "proxy", Message: fmt.Sprintf(msg, args...)}}
		}
		warn := func(msg string, args ...any) []health.Problem {
			return []health.Problem{{Key: "proxy/ca", Part: "proxy", Message: fmt.Sprintf(msg, args...), Warning: true}}
		}
		f := certFile()
		cert, _, err := LoadCert(f)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			return nil
		case err != nil:
			return p("the school's CA cannot be read, so HTTPS block pages are off: %v", err)
		}
		if loadErr != nil {
			if err := loadErr(); err != nil {
				return p("the school's CA could not be loaded, so HTTPS block pages are off: %v", err)
			}
		}
		left := cert.NotAfter.Sub(now())
		switch {
		case left <= 0:
			return p("the school's CA (%s) expired on %s: devices now reject HTTPS block pages; make a new one with `gatehouse ca init --force` and install it on every device",
				f, cert.NotAfter.Format("2 January 2006"))
		case left <= ExpiryWarning:
			return warn("warning: the school's CA (%s) expires on %s (in %d days): make a new one with `gatehouse ca init --force`, install it on every device, then restart gatehouse",
				f, cert.NotAfter.Format("2 January 2006"), int(left.Hours()/24))
		}
		return nil
	}
}

// Handler serves the CA for devices and IT on the admin listener:
// /ca.pem (PEM, what Chromebooks need), /ca.crt (DER, what Windows and
// Apple devices open) and /ca (how to deploy it). school names the school.
func Handler(certFile func() string, school func() string) http.Handler {
	mux := http.NewServeMux()
	load := func(w http.ResponseWriter) ([]byte, bool) {
		_, der, err := LoadCert(certFile())
		if err != nil {
			w.Header().Set("Cache-Control", "no-store")
			http.Error(w, "404 Not Found: this school has not made its web filter CA yet (gatehouse ca init)", http.StatusNotFound)
			return nil, false
		}
		return der, true
	}
	mux.HandleFunc("GET /ca.pem", func(w http.ResponseWriter, r *http.Request) {
		der, ok := load(w)
		if !ok {
			return
		}
		w.Header().Set("Content-Type", "application/x-pem-file")
		w.Header().Set("Content-Disposition", `attachment; filename="school-ca.pem"`)
		_, _ = w.Write((&CA{DER: der}).PEM())
	})
	mux.HandleFunc("GET /ca.crt", func(w http.ResponseWriter, r *http.Request) {
		der, ok := load(w)
		if !ok {
			return
		}
		w.Header().Set("Content-Type", "application/x-x509-ca-cert")
		w.Header().Set("Content-Disposition", `attachment; filename="school-ca.crt"`)
		_, _ = w.Write(der)
	})
	mux.HandleFunc("GET /ca", func(w http.ResponseWriter, r *http.Request) {
		cert, der, err := LoadCert(certFile())
		data := caPage{School: school()}
		if err == nil {
			data.Name, data.Until, data.SHA256 = cert.Subject.CommonName, cert.NotAfter.Format("2 January 2006"), Fingerprint(der)
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		var b strings.Builder
		if err := caTmpl.Execute(&b, data); err != nil {
			http.Error(w, "500 Internal Server Error", http.StatusInternalServerError)
			return
		}
		_, _ = w.Write([]byte(b.String()))
	})
	return mux
}

type caPage struct {
	School, Name, Until, SHA256 string
}

var caTmpl = template.Must(template.New("ca").Parse(`<!doctype html>
<html lang="en-GB"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{.School}}: web filter certificate</title>
<style>body{font-family:system-ui,sans-serif;max-width:46rem;margin:1rem auto;padding:0 1rem;line-height:1.5}code{word-break:break-all}</style>
</head><body>
<h1>{{.School}}: web filter certificate</h1>
{{if .Name}}
<p>The school's web filter shows its block page on secure (HTTPS) sites using its own certificate authority,
<strong>{{.Name}}</strong>, valid until {{.Until}}. Devices must trust it, or pupils see a browser error instead of
the block page. Only the school's managed devices should be given it.</p>
<p>Download: <a href="/ca.pem">ca.pem</a> (PEM: Chromebooks, Linux, Firefox) · <a href="/ca.crt">ca.crt</a> (DER: Windows, Apple).
Check its SHA-256 fingerprint after installing: <code>{{.SHA256}}</code></p>
<h2>Windows (Group Policy)</h2>
<p>Computer Configuration → Windows Settings → Security Settings → Public Key Policies → Trusted Root Certification
Authorities → Import <code>ca.crt</code>. Firefox 120 and later trusts it from the Windows store; older versions need the
<code>Certificates</code> policy with <code>ImportEnterpriseRoots</code>.</p>
<h2>Chromebooks (Google Admin)</h2>
<p>Admin console → Devices → Networks → Certificates → Add certificate: upload <code>ca.pem</code> (PEM only) and tick
"Chromebook: Use this certificate as an HTTPS certificate authority". Chromebooks need the explicit proxy (PAC file), not a
transparent one.</p>
<h2>Apple devices and Intune</h2>
<p>Add <code>ca.crt</code> to a configuration profile (Apple School Manager/MDM or Apple Configurator): certificates in MDM
profiles are trusted for TLS automatically. A profile installed by hand also needs Settings → General → About → Certificate
Trust Settings. In Intune, create a "Trusted certificate" profile for iOS/iPadOS and macOS (and Windows) with
<code>ca.crt</code>.</p>
<h2>Android</h2>
<p>Apps ignore certificates added by users or admins unless they opt in; expect some apps on personal Android devices to fail.</p>
{{else}}
<p>This school has not made its web filter certificate yet. IT can create it with <code>gatehouse ca init</code>.</p>
{{end}}
</body></html>
`))
