package config

// DNS configures the filtering resolver.
type DNS struct {
	Listen    []string `yaml:"listen"`    // host:port, UDP and TCP; host is an IP, localhost or empty (all)
	Upstreams []string `yaml:"upstreams"` // IP:port (a bare IP gets :53); empty = from /etc/resolv.conf (see Config.Upstreams)
	BlockTTL  Duration `yaml:"block_ttl"`
	// BlockResponse is nxdomain, null or blockpage.
	BlockResponse string `yaml:"block_response"`
}

// defaultDNS is the embedded DNS section.
func defaultDNS() DNS {
	return DNS{
		Listen:        []string{DefaultDNSListen},
		BlockTTL:      Duration(DefaultBlockTTL),
		BlockResponse: DefaultBlockResponse,
	}
}

// dnsSection validates the parts of dns: that listeners() and upstreams()
// do not cover.
func (v *validator) dnsSection() {}
