package config

// Proxy configures the HTTP proxy.
type Proxy struct {
	Listen string `yaml:"listen"`
}

// defaultProxy is the embedded proxy section.
func defaultProxy() Proxy { return Proxy{Listen: DefaultProxyListen} }

// proxySection validates the parts of proxy: that listeners() does not
// cover.
func (v *validator) proxySection() {}
