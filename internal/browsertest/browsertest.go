// Package browsertest drives Debian's chromium (headless, through
// chromedp) for pages' end-to-end tests: real pages, forms and cookies,
// axe-core's accessibility check, and screenshots at phone and laptop
// widths. Tests skip, saying so, where chromium or axe-core is missing
// (.ci/run installs both).
package browsertest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// Timeout bounds one browser (a safety net, not an assertion).
const Timeout = 3 * time.Minute

// AxeVersion is the axe-core release the accessibility check runs (npm's
// axe-core, MPL-2.0; fetched by .ci/run or the test, never committed).
const AxeVersion = "4.14.1"

// Viewport is a width pages are checked and shown at.
type Viewport struct {
	Label string
	W, H  int64
	Opts  []chromedp.EmulateViewportOption
}

// Viewports: a laptop (1366x768) and a phone (390x844, an iPhone 12 to 15).
var Viewports = []Viewport{
	{"laptop", 1366, 768, nil},
	{"phone", 390, 844, []chromedp.EmulateViewportOption{chromedp.EmulateMobile, chromedp.EmulatePortrait}},
}

// Chromium finds Debian's chromium, or skips the test.
func Chromium(t testing.TB) string {
	t.Helper()
	for _, name := range []string{"chromium", "/usr/bin/chromium"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Skip("chromium is not installed: apt-get install chromium (.ci/run installs it) to run the browser tests")
	return ""
}

// Tab is a page in a headless chromium with a fresh, empty profile.
type Tab struct {
	t   testing.TB
	ctx context.Context
}

// Start starts a headless chromium with a fresh, empty profile and
// returns the browser's context (its first, blank tab). The browser ends
// and its profile is removed with the test; the whole test is bounded by
// Timeout. It skips the test where chromium is not installed.
func Start(t testing.TB, extra ...chromedp.ExecAllocatorOption) context.Context {
	t.Helper()
	path := Chromium(t)
	dir, err := os.MkdirTemp("", "gatehouse-chromium-")
	if err != nil {
		t.Fatal(err)
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(path),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("no-default-browser-check", true),
		chromedp.Flag("password-store", "basic"),
		chromedp.UserDataDir(dir),
		chromedp.WindowSize(1366, 768),
	}
	ctx, stop := context.WithTimeout(context.Background(), Timeout)
	alloc, cancelAlloc := chromedp.NewExecAllocator(ctx, append(opts, extra...)...)
	root, cancelRoot := chromedp.NewContext(alloc)
	t.Cleanup(func() {
		cancelRoot()
		cancelAlloc()
		stop()
		for range 50 { // chromium's helpers may write in the profile for a moment after it exits
			if err := os.RemoveAll(dir); err == nil {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	})
	if err := chromedp.Do(root); err != nil {
		t.Fatalf("starting chromium: %v", err)
	}
	return root
}

// New starts chromium (Start) and returns its tab.
func New(t testing.TB, extra ...chromedp.ExecAllocatorOption) *Tab {
	t.Helper()
	return &Tab{t: t, ctx: Start(t, extra...)}
}

// Open loads url and returns the HTTP status of the page shown.
func (tb *Tab) Open(url string) int64 {
	tb.t.Helper()
	resp, err := chromedp.RunResponse(tb.ctx, chromedp.Navigate(url))
	if err != nil {
		tb.t.Fatalf("open %s: %v", url, err)
	}
	return resp.Status
}

// Click clicks sel (a link or a form's button) and returns the HTTP
// status of the page it leads to.
func (tb *Tab) Click(sel string) int64 {
	tb.t.Helper()
	resp, err := chromedp.RunResponse(tb.ctx, chromedp.Click(chromedp.CSS(sel), chromedp.NodeVisible))
	if err != nil {
		tb.t.Fatalf("click %s at %s: %v\n%s", sel, tb.Path(), err, tb.Text())
	}
	return resp.Status
}

// Text is what the page says.
func (tb *Tab) Text() string {
	v, err := chromedp.Run(tb.ctx, chromedp.Evaluate[string](`document.body ? document.body.innerText : ""`))
	if err != nil {
		return "(no text: " + err.Error() + ")"
	}
	return v
}

// Path is the page's path and query.
func (tb *Tab) Path() string {
	v, err := chromedp.Run(tb.ctx, chromedp.Evaluate[string](`location.pathname + location.search`))
	if err != nil {
		return "(unknown: " + err.Error() + ")"
	}
	return v
}

// ShotsDir is where screenshots go: $GATEHOUSE_SCREENSHOTS, or the test's
// temporary directory.
func ShotsDir(t testing.TB) string {
	t.Helper()
	if d := os.Getenv("GATEHOUSE_SCREENSHOTS"); d != "" {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatalf("GATEHOUSE_SCREENSHOTS: %v", err)
		}
		return d
	}
	return t.TempDir()
}

// CheckPage runs axe-core on the page shown at every Viewport, failing
// the test on serious or critical violations, checks that nothing makes
// it wider than a phone's screen, and saves a screenshot per width as
// dir/name-LABEL.png.
func (tb *Tab) CheckPage(axe, dir, name string) {
	tb.t.Helper()
	for _, v := range Viewports {
		if err := chromedp.Do(tb.ctx, chromedp.EmulateViewport(v.W, v.H, v.Opts...)); err != nil {
			tb.t.Fatalf("viewport %s: %v", v.Label, err)
		}
		tb.accessible(axe, name+" ("+v.Label+")")
		wide, err := chromedp.Run(tb.ctx, chromedp.Evaluate[int64](`document.documentElement.scrollWidth`))
		if err != nil {
			tb.t.Fatal(err)
		}
		if wide > v.W {
			tb.t.Errorf("%s is %dpx wide at %s width %d", name, wide, v.Label, v.W)
		}
		png, err := chromedp.Run(tb.ctx, chromedp.FullScreenshot(100))
		if err != nil {
			tb.t.Fatalf("screenshot %s: %v", name, err)
		}
		if err := os.WriteFile(filepath.Join(dir, name+"-"+v.Label+".png"), png, 0o644); err != nil {
			tb.t.Fatal(err)
		}
	}
}

var axeOnce struct {
	sync.Once
	src, skip string
	err       error
}

// AxeSource is axe.min.js: from $GATEHOUSE_AXE (.ci/run installs it with
// npm), else installed with npm into the user's cache directory. It
// returns a reason to skip when neither is possible (for a test that goes
// on without the check).
func AxeSource() (src, skip string, err error) {
	axeOnce.Do(func() {
		path := os.Getenv("GATEHOUSE_AXE")
		if path == "" {
			npm, lerr := exec.LookPath("npm")
			if lerr != nil {
				axeOnce.skip = "axe-core not available: set GATEHOUSE_AXE to axe.min.js or install npm (.ci/run does)"
				return
			}
			cache, cerr := os.UserCacheDir()
			if cerr != nil {
				cache = os.TempDir()
			}
			dir := filepath.Join(cache, "gatehouse-test", "axe-core-"+AxeVersion)
			path = filepath.Join(dir, "node_modules", "axe-core", "axe.min.js")
			if _, serr := os.Stat(path); serr != nil {
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
				defer cancel()
				out, ierr := exec.CommandContext(ctx, npm, "install", "--no-audit", "--no-fund", "--prefix", dir, "axe-core@"+AxeVersion).CombinedOutput()
				if ierr != nil {
					axeOnce.skip = fmt.Sprintf("axe-core could not be installed with npm (%v): %s", ierr, out)
					return
				}
			}
		}
		b, rerr := os.ReadFile(path)
		if rerr != nil {
			axeOnce.err = fmt.Errorf("axe-core: %w", rerr)
			return
		}
		axeOnce.src = string(b)
	})
	return axeOnce.src, axeOnce.skip, axeOnce.err
}

// Axe is AxeSource for a test that skips without it.
func Axe(t testing.TB) string {
	t.Helper()
	src, skip, err := AxeSource()
	if skip != "" {
		t.Skip(skip)
	}
	if err != nil {
		t.Fatal(err)
	}
	return src
}

type axeViolation struct {
	ID     string `json:"id"`
	Impact string `json:"impact"`
	Help   string `json:"help"`
	Nodes  []struct {
		Target []any  `json:"target"`
		HTML   string `json:"html"`
	} `json:"nodes"`
}

// accessible runs axe-core in the page: WCAG 2.2 A/AA and best practice;
// serious and critical violations fail the test.
func (tb *Tab) accessible(src, name string) {
	tb.t.Helper()
	if _, err := chromedp.Run(tb.ctx, chromedp.Evaluate[bool](src+";true")); err != nil {
		tb.t.Fatalf("injecting axe-core into %s: %v", name, err)
	}
	version, err := chromedp.Run(tb.ctx, chromedp.Evaluate[string]("axe.version"))
	if err != nil || version != AxeVersion {
		tb.t.Fatalf("axe-core %q was loaded (%v); the test pins %s", version, err, AxeVersion)
	}
	vs, err := chromedp.Run(tb.ctx, chromedp.Evaluate[[]axeViolation](`axe.run(document, {resultTypes: ["violations"]}).then(r => r.violations)`, chromedp.EvalAwaitPromise))
	if err != nil {
		tb.t.Fatalf("axe-core on %s: %v", name, err)
	}
	for _, v := range vs {
		if v.Impact != "serious" && v.Impact != "critical" {
			continue
		}
		var where []string
		for _, n := range v.Nodes {
			where = append(where, fmt.Sprint(n.Target)+" "+n.HTML)
		}
		tb.t.Errorf("%s (%s): %s violation %s: %s\n  %s", name, tb.Path(), v.Impact, v.ID, v.Help, strings.Join(where, "\n  "))
	}
}
