// Command cert-manager-controller runs cert-manager's certificate controllers for kubedruid's local control plane.
//
// Upstream's controller binary lives in a nested module that the go command cannot build from the module proxy
// (see docs/decisions/0002-cert-manager-controller.md), so this is kubedruid's own small main. It wires only the
// public controller packages that CA and SelfSigned issuance need; ACME, Vault, Venafi and the ingress/gateway shims
// are left out. No leader election: exactly one instance runs per local plane.
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sort"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"k8s.io/klog/v2"

	controllerpkg "github.com/cert-manager/cert-manager/pkg/controller"
	logf "github.com/cert-manager/cert-manager/pkg/logs"
	"github.com/cert-manager/cert-manager/pkg/util"

	// Each blank import registers controllers (controllerpkg.Register) or issuer types (issuer.RegisterIssuer).
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificaterequests/approver"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificaterequests/ca"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificaterequests/selfsigned"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/issuing"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/keymanager"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/readiness"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/requestmanager"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/revisionmanager"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/trigger"
	_ "github.com/cert-manager/cert-manager/pkg/controller/clusterissuers"
	_ "github.com/cert-manager/cert-manager/pkg/controller/issuers"
	_ "github.com/cert-manager/cert-manager/pkg/issuer/ca"
	_ "github.com/cert-manager/cert-manager/pkg/issuer/selfsigned"
)

func main() {
	kubeconfig := flag.String("kubeconfig", "", "path to the kubeconfig of the API server")
	clusterResourceNamespace := flag.String("cluster-resource-namespace", "kube-system",
		"namespace that holds the Secrets referenced by ClusterIssuers")
	namespace := flag.String("namespace", "", "watch only this namespace (default: all)")
	healthz := flag.String("healthz-listen-address", "127.0.0.1:9403",
		"address of /healthz, which answers 200 once every controller has started")
	workers := flag.Int("workers", 5, "workers per controller")
	minBackoff := flag.Duration("certificate-request-minimum-backoff", time.Hour,
		"delay before a failed issuance is retried (doubles up to the maximum)")
	maxBackoff := flag.Duration("certificate-request-maximum-backoff", 32*time.Hour, "longest retry delay")
	klog.InitFlags(flag.CommandLine)
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, controllerpkg.ContextOptions{
		Kubeconfig:         *kubeconfig,
		KubernetesAPIQPS:   50,
		KubernetesAPIBurst: 100,
		Namespace:          *namespace,
		IssuerOptions:      controllerpkg.IssuerOptions{ClusterResourceNamespace: *clusterResourceNamespace},
		CertificateOptions: controllerpkg.CertificateOptions{
			CertificateRequestMinimumBackoffDuration: *minBackoff,
			CertificateRequestMaximumBackoffDuration: *maxBackoff,
		},
	}, *workers, *healthz); err != nil {
		fmt.Fprintln(os.Stderr, "cert-manager-controller:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, opts controllerpkg.ContextOptions, workers int, healthzAddress string) error {
	log := klog.Background()
	ctx = logf.NewContext(ctx, log)
	log.Info("starting cert-manager controllers", "version", util.AppVersion)

	var started atomic.Bool
	listener, err := net.Listen("tcp", healthzAddress)
	if err != nil {
		return fmt.Errorf("healthz listener: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		if !started.Load() {
			http.Error(w, "starting", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	go func() { _ = http.Serve(listener, mux) }()

	factory, err := controllerpkg.NewContextFactory(ctx, opts)
	if err != nil {
		return err
	}

	names := make([]string, 0, len(controllerpkg.Known()))
	for name := range controllerpkg.Known() {
		names = append(names, name)
	}
	sort.Strings(names)

	// Controllers register their informers while they are constructed, so informers start only after all are built.
	controllers := make(map[string]controllerpkg.Interface, len(names))
	for _, name := range names {
		c, err := controllerpkg.Known()[name](factory)
		if err != nil {
			return fmt.Errorf("constructing %s: %w", name, err)
		}
		controllers[name] = c
	}
	shared, err := factory.Build()
	if err != nil {
		return err
	}
	shared.SharedInformerFactory.Start(ctx.Done())
	shared.KubeSharedInformerFactory.Start(ctx.Done())
	shared.HTTP01ResourceMetadataInformersFactory.Start(ctx.Done())

	var wg sync.WaitGroup
	errs := make(chan error, len(controllers))
	for name, c := range controllers {
		wg.Go(func() {
			log.Info("starting controller", "controller", name)
			if err := c.Run(workers, ctx); err != nil {
				errs <- fmt.Errorf("%s: %w", name, err)
			}
		})
	}

	// Healthy once the informer caches every controller depends on have synced.
	for typ, ok := range shared.SharedInformerFactory.WaitForCacheSync(ctx.Done()) {
		if !ok {
			return fmt.Errorf("informer for %v did not sync", typ)
		}
	}
	for typ, ok := range shared.KubeSharedInformerFactory.WaitForCacheSync(ctx.Done()) {
		if !ok {
			return fmt.Errorf("informer for %v did not sync", typ)
		}
	}
	started.Store(true)
	log.Info("all controllers started", "controllers", names)

	select {
	case err := <-errs:
		return err
	case <-ctx.Done():
	}
	wg.Wait()
	return nil
}
