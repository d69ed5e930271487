// CoreDNS with only the plugins the real node's Corefile uses (node_layout.corefile). CoreDNS's own main links every
// plugin, with the cloud providers' SDKs of some, which more than doubles its build on a fresh machine.
package main

import (
	"github.com/coredns/coredns/coremain"
	_ "github.com/coredns/coredns/plugin/bind"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/template"
)

func main() {
	coremain.Run()
}
