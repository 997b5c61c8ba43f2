package blocklists

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync"
	"time"
)

// Download defaults and limits.
const (
	DefaultFetchTimeout = 60 * time.Second
	DefaultFetchMaxSize = 256 << 20

	fetchMaxRedirects = 5
	fetchSniffLen     = 4 << 10  // decompressed bytes checked for HTML / NUL
	fetchPeekLen      = 64 << 10 // raw bytes buffered for sniffing (enough for gzip)
	fetchStaleTempAge = time.Hour
)

// Feed is one remote list.
type Feed struct {
	Name     string        // list name, used for the cache file name (sanitised)
	URL      string        // http or https
	Timeout  time.Duration // whole download; default 60s
	MaxSize  int64         // cap on the body as received (after any transport gunzip) and, for a gzip body, as unpacked; default 256 MiB
	Header   http.Header   // extra headers, e.g. Authorization (never logged; dropped on a redirect to another host)
	Username string        // optional HTTP Basic
	Password string
}

// Fetcher downloads feeds into Dir (created 0700; files 0600).
type Fetcher struct {
	Dir string
	// Client is used for downloads; nil means a client with TLS verification
	// on, the proxy from the environment and bounded dial/TLS/header waits.
	// The redirect policy and whole-download timeout are always applied on a
	// copy; the caller's client is not modified.
	Client    *http.Client
	UserAgent string // default "Gatehouse/<version> (+school web filter)"
}

// FetchResult describes a download or a cached copy.
type FetchResult struct {
	Path         string    // the cached copy (valid whether or not anything changed)
	Changed      bool      // a new body was stored
	NotModified  bool      // server said 304
	Bytes        int64     // size of the cached copy
	Fetched      time.Time // when the cached body was downloaded
	ETag         string
	LastModified string
}

// fetchMeta is the JSON sidecar next to a cached list.
type fetchMeta struct {
	URL          string    `json:"url"`        // redacted, for people
	URLHash      string    `json:"url_sha256"` // validators apply to this URL only
	ETag         string    `json:"etag,omitempty"`
	LastModified string    `json:"last_modified,omitempty"`
	Fetched      time.Time `json:"fetched"`
	Bytes        int64     `json:"bytes"`
	SHA256       string    `json:"sha256"` // of the body as stored
}

// Fetch downloads feed if changed (If-None-Match / If-Modified-Since from
// the cache's sidecar), checks the body is a text list, and atomically
// replaces the cached copy. validate (may be nil) gets the path of the new
// temporary file before it replaces the cache; if it fails the old copy
// stays and its error is returned unchanged. progress (may be nil) gets
// (bytesSoFar, totalOrMinus1) as the body streams.
//
// A 200 whose body is identical to the cached copy is reported with
// Changed false and validate is not called.
func (f *Fetcher) Fetch(ctx context.Context, feed Feed, validate func(tmpPath string) error, progress func(done, total int64)) (FetchResult, error) {
	if feed.Name == "" {
		return FetchResult{}, errors.New("list feed has no name")
	}
	fe := &fetchErrs{name: feed.Name, url: "<invalid URL>", secrets: feedSecretStrings(feed)}
	u, err := url.Parse(feed.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		// url.Parse errors echo the raw URL, which may hold credentials.
		return FetchResult{}, fe.new("URL must be an absolute http or https URL", nil)
	}
	if u.User != nil {
		if p, ok := u.User.Password(); ok {
			fe.secrets = append(fe.secrets, p, url.QueryEscape(p), url.PathEscape(p))
		}
	}
	fe.url = redactFeedURL(u)
	if f.Dir == "" {
		return FetchResult{}, fe.new("no cache directory configured", nil)
	}
	if err := os.MkdirAll(f.Dir, 0o700); err != nil {
		return FetchResult{}, fe.new("creating cache directory", err)
	}
	timeout := feed.Timeout
	if timeout <= 0 {
		timeout = DefaultFetchTimeout
	}
	maxSize := feed.MaxSize
	if maxSize <= 0 {
		maxSize = DefaultFetchMaxSize
	}

	base := feedCacheBase(feed.Name)
	listPath := filepath.Join(f.Dir, base+".list")
	metaPath := filepath.Join(f.Dir, base+".meta.json")
	// One download of a feed at a time across processes sharing the cache
	// (`gatehouse lists update` beside a running serve): the second waits,
	// then sends the first's validators, so their renames of the copy and
	// writes of its sidecar never interleave (a copy paired with another
	// body's validators would be kept on a 304 for ever).
	unlock, err := lockFile(ctx, filepath.Join(f.Dir, "."+base+".lock"))
	if err != nil {
		return FetchResult{}, fe.new("waiting for another update of this list", err)
	}
	defer unlock()
	removeStaleFetchTemps(f.Dir, base)

	urlHash := hashFeedURL(u)
	old, haveOld := readFetchMeta(metaPath)
	if haveOld {
		if st, err := os.Stat(listPath); err != nil || !st.Mode().IsRegular() || old.URLHash != urlHash {
			haveOld = false // validators belong to another body or URL
		}
	}

	tctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(tctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return FetchResult{}, fe.new("building request", nil)
	}
	for k, vs := range feed.Header {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	if req.Header.Get("User-Agent") == "" {
		ua := f.UserAgent
		if ua == "" {
			ua = defaultFetchUserAgent()
		}
		req.Header.Set("User-Agent", ua)
	}
	if req.Header.Get("Accept") == "" {
		req.Header.Set("Accept", "text/plain, application/gzip;q=0.9, */*;q=0.5")
	}
	if feed.Username != "" || feed.Password != "" {
		req.SetBasicAuth(feed.Username, feed.Password)
	}
	conditional := false
	if haveOld {
		if old.ETag != "" {
			req.Header.Set("If-None-Match", old.ETag)
			conditional = true
		}
		if old.LastModified != "" {
			req.Header.Set("If-Modified-Since", old.LastModified)
			conditional = true
		}
	}

	resp, err := f.client(timeout, feed.Header).Do(req)
	if err != nil {
		return FetchResult{}, fe.transport(ctx, tctx, timeout, "request failed", err)
	}
	defer resp.Body.Close()

	if resp.StatusCode == http.StatusNotModified {
		if !conditional {
			return FetchResult{}, fe.new("server answered 304 Not Modified to an unconditional request", nil)
		}
		res := old.result(listPath)
		res.NotModified = true
		if st, err := os.Stat(listPath); err == nil {
			res.Bytes = st.Size()
		}
		return res, nil
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 || resp.StatusCode == http.StatusPartialContent {
		return FetchResult{}, fe.new("HTTP "+resp.Status, nil)
	}
	if resp.ContentLength > maxSize {
		return FetchResult{}, fe.sizeCap(maxSize)
	}
	if mt, _, err := mime.ParseMediaType(resp.Header.Get("Content-Type")); err == nil &&
		(mt == "text/html" || mt == "application/xhtml+xml") {
		return FetchResult{}, fe.new("server sent an HTML page (Content-Type "+mt+"), not a list", nil)
	}
	if ce := strings.ToLower(strings.TrimSpace(resp.Header.Get("Content-Encoding"))); ce != "" && ce != "identity" && ce != "gzip" && ce != "x-gzip" {
		return FetchResult{}, fe.new(fmt.Sprintf("unsupported Content-Encoding %q", ce), nil)
	}

	// Judge the first bytes before writing anything.
	br := bufio.NewReaderSize(resp.Body, fetchPeekLen)
	head, err := br.Peek(fetchPeekLen)
	if err != nil && err != io.EOF {
		return FetchResult{}, fe.transport(ctx, tctx, timeout, "reading body", err)
	}
	if len(head) == 0 {
		return FetchResult{}, fe.new("server sent an empty body", nil)
	}
	if msg := sniffFetchBody(head); msg != "" {
		return FetchResult{}, fe.new(msg, nil)
	}

	tmp, err := os.CreateTemp(f.Dir, "."+base+".*.tmp")
	if err != nil {
		return FetchResult{}, fe.new("creating temporary file", err)
	}
	tmpPath := tmp.Name()
	keep := false
	defer func() {
		if !keep {
			tmp.Close()
			os.Remove(tmpPath)
		}
	}()

	h := sha256.New()
	n, err := fetchCopyCapped(io.MultiWriter(tmp, h), br, maxSize, resp.ContentLength, progress)
	if err != nil {
		if errors.Is(err, errFetchSizeCap) {
			return FetchResult{}, fe.sizeCap(maxSize)
		}
		var we fetchWriteError
		if errors.As(err, &we) {
			return FetchResult{}, fe.new("writing temporary file", we.err)
		}
		return FetchResult{}, fe.transport(ctx, tctx, timeout, "reading body", err)
	}
	if err := tmp.Sync(); err != nil {
		return FetchResult{}, fe.new("syncing temporary file", err)
	}
	if err := tmp.Close(); err != nil {
		return FetchResult{}, fe.new("closing temporary file", err)
	}
	sum := hex.EncodeToString(h.Sum(nil))
	if len(head) >= 2 && head[0] == 0x1f && head[1] == 0x8b {
		// A gzip body is stored as served and unpacked when parsed: hold
		// what it unpacks to to the same cap, before anything parses it.
		if msg := gzipUnpackedWithin(tmpPath, maxSize); msg != "" {
			return FetchResult{}, fe.new(msg, nil)
		}
	}

	meta := fetchMeta{
		URL: fe.url, URLHash: urlHash,
		ETag: resp.Header.Get("ETag"), LastModified: resp.Header.Get("Last-Modified"),
		Fetched: time.Now().UTC(), Bytes: n, SHA256: sum,
	}

	// Same body as the cached copy: keep it, refresh the validators.
	if prev, ok := readFetchMeta(metaPath); ok && prev.SHA256 == sum && prev.Bytes == n && fetchFileSHA256(listPath) == sum {
		meta.Fetched = prev.Fetched
		if meta.ETag != prev.ETag || meta.LastModified != prev.LastModified || meta.URLHash != prev.URLHash {
			_ = writeFetchMeta(metaPath, meta)
		}
		return meta.result(listPath), nil
	}

	if validate != nil {
		if err := validate(tmpPath); err != nil {
			return FetchResult{}, err
		}
	}
	if ctx.Err() != nil {
		return FetchResult{}, fe.new("cancelled", ctx.Err())
	}

	// Drop the old sidecar first so a crash never pairs new validators
	// with an old body (a missing sidecar only costs a full download).
	if err := os.Remove(metaPath); err != nil && !errors.Is(err, os.ErrNotExist) {
		return FetchResult{}, fe.new("removing old metadata", err)
	}
	if err := os.Rename(tmpPath, listPath); err != nil {
		return FetchResult{}, fe.new("replacing cached copy", err)
	}
	keep = true
	fetchSyncDir(f.Dir)
	// The new body is in place; a sidecar failure only loses validators.
	_ = writeFetchMeta(metaPath, meta)
	res := meta.result(listPath)
	res.Changed = true
	return res, nil
}

// Cached returns the cached copy of a feed, if any (for start-up without
// network). meta is empty apart from Path and Bytes if the sidecar is lost.
func (f *Fetcher) Cached(name string) (path string, meta FetchResult, ok bool) {
	if name == "" || f.Dir == "" {
		return "", FetchResult{}, false
	}
	base := feedCacheBase(name)
	path = filepath.Join(f.Dir, base+".list")
	st, err := os.Stat(path)
	if err != nil || !st.Mode().IsRegular() {
		return "", FetchResult{}, false
	}
	m, _ := readFetchMeta(filepath.Join(f.Dir, base+".meta.json"))
	meta = m.result(path)
	meta.Bytes = st.Size()
	return path, meta, true
}

func (m fetchMeta) result(path string) FetchResult {
	return FetchResult{Path: path, Bytes: m.Bytes, Fetched: m.Fetched, ETag: m.ETag, LastModified: m.LastModified}
}

// client returns a copy of the configured client with the download
// timeout and redirect policy applied. secret holds the feed's own
// headers (auth.header's token): like Authorization, which net/http drops
// by itself, they are sent only to the feed's host and its subdomains,
// never to another host a redirect points at.
func (f *Fetcher) client(timeout time.Duration, secret http.Header) *http.Client {
	base := f.Client
	if base == nil {
		base = defaultFetchClient()
	}
	c := *base
	if c.Timeout <= 0 || c.Timeout > timeout {
		c.Timeout = timeout
	}
	next := base.CheckRedirect
	c.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		if len(via) > fetchMaxRedirects {
			return fmt.Errorf("stopped after %d redirects", fetchMaxRedirects)
		}
		if len(via) > 0 && !sameFeedHost(req.URL, via[0].URL) {
			for k := range secret {
				req.Header.Del(k)
			}
			req.Header.Del("Authorization")
		}
		if req.URL.Scheme != "https" {
			for _, v := range via {
				if v.URL.Scheme == "https" {
					return fmt.Errorf("refusing redirect from https to %s (%s)", req.URL.Scheme, redactFeedURL(req.URL))
				}
			}
		}
		if next != nil {
			return next(req, via)
		}
		return nil
	}
	return &c
}

// sameFeedHost reports whether a redirect target is the feed's own host or
// one of its subdomains (the hosts its credentials may go to).
func sameFeedHost(dest, feed *url.URL) bool {
	d := strings.TrimSuffix(strings.ToLower(dest.Hostname()), ".")
	h := strings.TrimSuffix(strings.ToLower(feed.Hostname()), ".")
	if d == h {
		return true
	}
	return !strings.ContainsAny(d, ":%") && net.ParseIP(h) == nil && strings.HasSuffix(d, "."+h)
}

var defaultFetchClient = sync.OnceValue(func() *http.Client {
	return &http.Client{
		Transport: &http.Transport{
			Proxy: http.ProxyFromEnvironment,
			DialContext: (&net.Dialer{
				Timeout:   30 * time.Second,
				KeepAlive: 30 * time.Second,
			}).DialContext,
			TLSClientConfig:       &tls.Config{MinVersion: tls.VersionTLS12},
			ForceAttemptHTTP2:     true,
			TLSHandshakeTimeout:   15 * time.Second,
			ResponseHeaderTimeout: 60 * time.Second,
			ExpectContinueTimeout: time.Second,
			IdleConnTimeout:       90 * time.Second,
			MaxIdleConns:          16,
		},
		Timeout: DefaultFetchTimeout,
	}
})

var defaultFetchUserAgent = sync.OnceValue(func() string {
	v := "dev"
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		v = bi.Main.Version
	}
	return "Gatehouse/" + v + " (+school web filter)"
})

// sniffFetchBody judges the first raw bytes of a body and returns why it is
// not a list, or "". Gzip data is judged on its decompressed start.
func sniffFetchBody(head []byte) string {
	b := head
	if len(b) >= 2 && b[0] == 0x1f && b[1] == 0x8b {
		zr, err := gzip.NewReader(bytes.NewReader(head))
		if err != nil {
			return "body is not valid gzip data"
		}
		buf := make([]byte, fetchSniffLen)
		n, err := io.ReadFull(zr, buf)
		if err != nil && err != io.EOF && err != io.ErrUnexpectedEOF {
			return "body is not valid gzip data"
		}
		if n == 0 {
			return "server sent an empty body (gzip)"
		}
		b = buf[:n]
	}
	if len(b) > fetchSniffLen {
		b = b[:fetchSniffLen]
	}
	if bytes.IndexByte(b, 0) >= 0 {
		return "server sent binary data (NUL bytes), not a text list"
	}
	t := bytes.TrimPrefix(b, []byte("\xef\xbb\xbf"))
	t = bytes.TrimLeft(t, " \t\r\n\f\v")
	if len(t) > 16 {
		t = t[:16]
	}
	t = bytes.ToLower(t)
	for _, p := range []string{"<!doctype", "<html", "<head", "<body"} {
		if bytes.HasPrefix(t, []byte(p)) {
			return "server sent an HTML page, not a list"
		}
	}
	return ""
}

// gzipUnpackedWithin reads the gzip file at path through and returns why
// it is refused: it unpacks to more than max bytes, or is corrupt; "" if
// neither.
func gzipUnpackedWithin(path string, max int64) string {
	fh, err := os.Open(path)
	if err != nil {
		return "reading the download back: " + err.Error()
	}
	defer fh.Close()
	zr, err := gzip.NewReader(bufio.NewReaderSize(fh, 64<<10))
	if err != nil {
		return "body is not valid gzip data"
	}
	n, err := io.Copy(io.Discard, io.LimitReader(zr, max+1))
	switch {
	case n > max:
		return fmt.Sprintf("download exceeds size cap of %d bytes (unpacked from gzip)", max)
	case err != nil:
		return "gzip data truncated or corrupt: " + err.Error()
	}
	return ""
}

var errFetchSizeCap = errors.New("size cap exceeded")

type fetchWriteError struct{ err error }

func (e fetchWriteError) Error() string { return e.err.Error() }

// fetchCopyCapped streams r to w, failing once more than max bytes arrive.
func fetchCopyCapped(w io.Writer, r io.Reader, max, total int64, progress func(done, total int64)) (int64, error) {
	buf := make([]byte, 64<<10)
	var n int64
	for {
		k, rerr := r.Read(buf)
		if k > 0 {
			if n+int64(k) > max {
				return n, errFetchSizeCap
			}
			if _, err := w.Write(buf[:k]); err != nil {
				return n, fetchWriteError{err}
			}
			n += int64(k)
			if progress != nil {
				progress(n, total)
			}
		}
		if rerr == io.EOF {
			return n, nil
		}
		if rerr != nil {
			return n, rerr
		}
	}
}

// writeFetchMeta replaces a feed's validators file (writeFileAtomic).
func writeFetchMeta(path string, m fetchMeta) error {
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(path, append(b, '\n'))
}

func readFetchMeta(path string) (fetchMeta, bool) {
	var m fetchMeta
	b, err := os.ReadFile(path)
	if err != nil || json.Unmarshal(b, &m) != nil {
		return fetchMeta{}, false
	}
	return m, true
}

func fetchFileSHA256(path string) string {
	fh, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer fh.Close()
	h := sha256.New()
	if _, err := io.Copy(h, fh); err != nil {
		return ""
	}
	return hex.EncodeToString(h.Sum(nil))
}

// fetchSyncDir makes a rename durable; best effort.
func fetchSyncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
}

// removeStaleFetchTemps deletes temporary files a crashed run left behind.
func removeStaleFetchTemps(dir, base string) {
	matches, _ := filepath.Glob(filepath.Join(dir, "."+fetchGlobEscape(base)+".*.tmp"))
	for _, m := range matches {
		if st, err := os.Lstat(m); err == nil && st.Mode().IsRegular() && time.Since(st.ModTime()) > fetchStaleTempAge {
			os.Remove(m)
		}
	}
}

func fetchGlobEscape(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `*`, `\*`, `?`, `\?`, `[`, `\[`)
	return r.Replace(s)
}

// feedCacheBase turns a list name into a safe file name. Names that are
// already safe are kept; others are cleaned and suffixed with a hash of
// the original so distinct names never share a file.
func feedCacheBase(name string) string {
	safe := len(name) <= 100 && name != "" && name[0] != '.'
	var b strings.Builder
	for i := 0; i < len(name) && b.Len() < 64; i++ {
		c := name[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_':
			b.WriteByte(c)
		case c == '.' && i > 0:
			b.WriteByte(c)
		default:
			safe = false
			b.WriteByte('_')
		}
	}
	if safe {
		return name
	}
	h := sha256.Sum256([]byte(name))
	return b.String() + "-" + hex.EncodeToString(h[:4])
}

func hashFeedURL(u *url.URL) string {
	c := *u
	c.User = nil
	c.Fragment, c.RawFragment = "", ""
	h := sha256.Sum256([]byte(c.String()))
	return hex.EncodeToString(h[:])
}

// redactFeedURL drops userinfo and the fragment and hides query values whose
// names look like credentials.
func redactFeedURL(u *url.URL) string {
	c := *u
	c.User = nil
	c.Fragment, c.RawFragment = "", ""
	if c.RawQuery != "" {
		q, err := url.ParseQuery(c.RawQuery)
		if err != nil {
			c.RawQuery = "REDACTED"
		} else {
			for k := range q {
				if secretQueryParam(k) {
					q[k] = []string{"REDACTED"}
				}
			}
			c.RawQuery = q.Encode()
		}
	}
	return c.String()
}

func secretQueryParam(k string) bool {
	k = strings.ToLower(k)
	for _, s := range []string{"key", "token", "auth", "pass", "pwd", "secret", "sig", "cred", "session", "code"} {
		if strings.Contains(k, s) {
			return true
		}
	}
	return false
}

// feedSecretStrings lists strings that must never appear in an error.
func feedSecretStrings(feed Feed) []string {
	var s []string
	if feed.Password != "" {
		s = append(s, feed.Password, url.QueryEscape(feed.Password), url.PathEscape(feed.Password))
	}
	if feed.Username != "" || feed.Password != "" {
		s = append(s, base64.StdEncoding.EncodeToString([]byte(feed.Username+":"+feed.Password)))
	}
	for _, vs := range feed.Header {
		for _, v := range vs {
			// Short values (e.g. "gzip") would garble messages; tokens are long.
			if len(v) >= 8 {
				s = append(s, v)
			}
			if _, tok, ok := strings.Cut(v, " "); ok && len(tok) >= 8 {
				s = append(s, tok)
			}
		}
	}
	return s
}

// fetchErrs builds errors that name the list and its redacted URL and
// never carry credentials.
type fetchErrs struct {
	name, url string
	secrets   []string
}

// FetchError is a download failure. Its message names the list and the
// URL without credentials.
type FetchError struct {
	List string
	URL  string // redacted
	msg  string
	err  error
}

func (e *FetchError) Error() string { return e.msg }

// Unwrap gives the underlying cause (e.g. a TLS or timeout error).
func (e *FetchError) Unwrap() error { return e.err }

func (b *fetchErrs) new(what string, err error) error {
	msg := "list " + b.name + ": " + what
	if err != nil {
		msg += ": " + err.Error()
	}
	msg += " (" + b.url + ")"
	for _, s := range b.secrets {
		if s != "" {
			msg = strings.ReplaceAll(msg, s, "REDACTED")
		}
	}
	return &FetchError{List: b.name, URL: b.url, msg: msg, err: err}
}

func (b *fetchErrs) sizeCap(max int64) error {
	return b.new(fmt.Sprintf("download exceeds size cap of %d bytes", max), nil)
}

// transport reports a network error, naming timeouts and cancellation.
func (b *fetchErrs) transport(parent, tctx context.Context, timeout time.Duration, what string, err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err // its text repeats the URL, possibly with a username
	}
	var ne net.Error
	switch {
	case parent.Err() != nil:
		return b.new("download cancelled", err)
	case tctx.Err() != nil || errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()):
		return b.new(fmt.Sprintf("download timed out after %s", timeout), err)
	}
	return b.new(what, err)
}
