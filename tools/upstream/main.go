// Command kubevirt-upstream runs KubeVirt's own code (kubevirt.io/kubevirt, pinned in go.mod)
// as the test oracle of the differential suite (tests/upstream/).
//
// It is a thin wiring layer: every decision it reports is made by upstream packages, wired the
// way virt-controller (pkg/virt-controller/watch/application.go) and virt-api
// (pkg/virt-api/api.go, pkg/virt-api/webhooks/validating-webhook) wire them.
//
//	crds                       upstream's CRDs for VMI, VM, VMIM and KubeVirt, as one YAML stream
//	webhook-config --url U --ca-file F
//	                           upstream's virt-launcher eviction webhook registration, pointed at U
//	updater --kubeconfig K --launcher-image IMG --kubevirt-namespace NS
//	                           upstream's WorkloadUpdateController with real informers, until SIGTERM
//	webhook --kubeconfig K --listen 127.0.0.1:PORT --cert C --key K [--kubevirt-namespace NS]
//	                           upstream's pod eviction admitter over TLS, until SIGTERM; one JSON
//	                           line per verdict on stdout
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	k8sv1 "k8s.io/api/core/v1"
	extv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	k8scorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"sigs.k8s.io/yaml"

	"kubevirt.io/client-go/kubecli"

	"kubevirt.io/kubevirt/pkg/controller"
	virtconfig "kubevirt.io/kubevirt/pkg/virt-config"
	validatingwebhook "kubevirt.io/kubevirt/pkg/virt-api/webhooks/validating-webhook"
	workloadupdater "kubevirt.io/kubevirt/pkg/virt-controller/watch/workload-updater"
	"kubevirt.io/kubevirt/pkg/virt-operator/resource/generate/components"
)

// evictionWebhookName is the entry of virt-api's ValidatingWebhookConfiguration that guards
// virt-launcher evictions (components.NewVirtAPIValidatingWebhookConfiguration).
const evictionWebhookName = "virt-launcher-eviction-interceptor.kubevirt.io"

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	var err error
	switch os.Args[1] {
	case "crds":
		err = printCRDs()
	case "webhook-config":
		err = printWebhookConfig(os.Args[2:])
	case "updater":
		err = runUpdater(os.Args[2:])
	case "webhook":
		err = runWebhook(os.Args[2:])
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "kubevirt-upstream %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: kubevirt-upstream crds | webhook-config | updater | webhook [flags]")
	os.Exit(2)
}

func printCRDs() error {
	makers := []func() (*extv1.CustomResourceDefinition, error){
		components.NewVirtualMachineInstanceCrd,
		components.NewVirtualMachineCrd,
		components.NewVirtualMachineInstanceMigrationCrd,
		components.NewKubeVirtCrd,
	}
	var out bytes.Buffer
	for _, make := range makers {
		crd, err := make()
		if err != nil {
			return err
		}
		doc, err := yaml.Marshal(crd)
		if err != nil {
			return err
		}
		out.WriteString("---\n")
		out.Write(doc)
	}
	_, err := os.Stdout.Write(out.Bytes())
	return err
}

func printWebhookConfig(args []string) error {
	fs := flag.NewFlagSet("webhook-config", flag.ExitOnError)
	url := fs.String("url", "", "https URL of the webhook server, without the path")
	caFile := fs.String("ca-file", "", "PEM CA bundle that verifies the server's certificate")
	_ = fs.Parse(args)
	if *url == "" || *caFile == "" {
		return errors.New("--url and --ca-file are required")
	}
	ca, err := os.ReadFile(*caFile)
	if err != nil {
		return err
	}
	config := components.NewVirtAPIValidatingWebhookConfiguration("kubevirt")
	var kept []admissionregistrationv1.ValidatingWebhook
	for _, hook := range config.Webhooks {
		if hook.Name != evictionWebhookName {
			continue
		}
		// virt-api is reached through its Service; the test cluster has no Services that route,
		// so the same path is reached through a URL on loopback.
		full := *url + *hook.ClientConfig.Service.Path
		hook.ClientConfig = admissionregistrationv1.WebhookClientConfig{URL: &full, CABundle: ca}
		kept = append(kept, hook)
	}
	if len(kept) != 1 {
		return fmt.Errorf("upstream's webhook configuration has %d entries named %s", len(kept), evictionWebhookName)
	}
	config.Webhooks = kept
	doc, err := yaml.Marshal(config)
	if err != nil {
		return err
	}
	_, err = os.Stdout.Write(doc)
	return err
}

// clients builds the KubeVirt client and a started informer factory with the KubeVirt CR and CRD
// informers synced, and upstream's ClusterConfig over them, as virt-controller's Execute does.
func clients(ctx context.Context, kubeconfig, namespace string) (kubecli.KubevirtClient, controller.KubeInformerFactory, *virtconfig.ClusterConfig, error) {
	virtCli, err := kubecli.GetKubevirtClientFromFlags("", kubeconfig)
	if err != nil {
		return nil, nil, nil, err
	}
	factory := controller.NewKubeInformerFactory(virtCli.RestClient(), virtCli, nil, namespace)
	crdInformer := factory.CRD()
	kubeVirtInformer := factory.KubeVirt()
	factory.Start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), crdInformer.HasSynced, kubeVirtInformer.HasSynced) {
		return nil, nil, nil, errors.New("informers for CRDs and KubeVirt CRs did not sync")
	}
	clusterConfig, err := virtconfig.NewClusterConfig(crdInformer, kubeVirtInformer, namespace)
	if err != nil {
		return nil, nil, nil, err
	}
	return virtCli, factory, clusterConfig, nil
}

func untilSignal() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
}

func runUpdater(args []string) error {
	fs := flag.NewFlagSet("updater", flag.ExitOnError)
	kubeconfig := fs.String("kubeconfig", "", "kubeconfig of the cluster")
	launcherImage := fs.String("launcher-image", "", "the virt-launcher image the cluster is meant to run")
	namespace := fs.String("kubevirt-namespace", "kubevirt", "namespace of the KubeVirt CR")
	_ = fs.Parse(args)
	if *kubeconfig == "" || *launcherImage == "" {
		return errors.New("--kubeconfig and --launcher-image are required")
	}
	ctx, stop := untilSignal()
	defer stop()

	virtCli, factory, clusterConfig, err := clients(ctx, *kubeconfig, *namespace)
	if err != nil {
		return err
	}
	// As virt-controller's newRecorder: events go to the API server.
	broadcaster := record.NewBroadcaster()
	broadcaster.StartRecordingToSink(&k8scorev1.EventSinkImpl{Interface: virtCli.CoreV1().Events(k8sv1.NamespaceAll)})
	defer broadcaster.Shutdown()
	recorder := broadcaster.NewRecorder(scheme.Scheme, k8sv1.EventSource{Component: "workload-update-controller"})

	updater, err := workloadupdater.NewWorkloadUpdateController(
		*launcherImage,
		factory.VMI(),
		factory.KubeVirtPod(),
		factory.VirtualMachineInstanceMigration(),
		factory.KubeVirt(),
		recorder,
		virtCli,
		clusterConfig,
	)
	if err != nil {
		return err
	}
	factory.Start(ctx.Done())
	fmt.Fprintln(os.Stderr, "kubevirt-upstream updater: running")
	updater.Run(ctx.Done())
	return nil
}

// verdict is one line of the webhook's stdout: what upstream's admitter answered for one eviction.
type verdict struct {
	Namespace string `json:"namespace"`
	Pod       string `json:"pod"`
	DryRun    bool   `json:"dryRun"`
	Allowed   bool   `json:"allowed"`
	Message   string `json:"message"`
}

// recordingWriter keeps the response body so the verdict can be logged after upstream wrote it.
type recordingWriter struct {
	http.ResponseWriter
	body bytes.Buffer
}

func (w *recordingWriter) Write(b []byte) (int, error) {
	w.body.Write(b)
	return w.ResponseWriter.Write(b)
}

func runWebhook(args []string) error {
	fs := flag.NewFlagSet("webhook", flag.ExitOnError)
	kubeconfig := fs.String("kubeconfig", "", "kubeconfig of the cluster")
	listen := fs.String("listen", "127.0.0.1:0", "loopback address to serve TLS on")
	cert := fs.String("cert", "", "PEM server certificate")
	key := fs.String("key", "", "PEM server key")
	namespace := fs.String("kubevirt-namespace", "kubevirt", "namespace of the KubeVirt CR")
	_ = fs.Parse(args)
	if *kubeconfig == "" || *cert == "" || *key == "" {
		return errors.New("--kubeconfig, --cert and --key are required")
	}
	ctx, stop := untilSignal()
	defer stop()

	virtCli, _, clusterConfig, err := clients(ctx, *kubeconfig, *namespace)
	if err != nil {
		return err
	}
	verdicts := json.NewEncoder(os.Stdout)
	mux := http.NewServeMux()
	mux.HandleFunc(components.PodEvictionValidatePath, func(w http.ResponseWriter, r *http.Request) {
		// The request names the pod; the response body carries only the verdict.
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<20))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		request := admissionv1.AdmissionReview{}
		_ = json.Unmarshal(body, &request)
		r.Body = io.NopCloser(bytes.NewReader(body))
		rec := &recordingWriter{ResponseWriter: w}
		validatingwebhook.ServePodEvictionInterceptor(rec, r, clusterConfig, virtCli)
		review := admissionv1.AdmissionReview{}
		if err := json.Unmarshal(rec.body.Bytes(), &review); err != nil || review.Response == nil {
			fmt.Fprintf(os.Stderr, "kubevirt-upstream webhook: unreadable response: %v\n", err)
			return
		}
		v := verdict{Allowed: review.Response.Allowed}
		if review.Response.Result != nil {
			v.Message = review.Response.Result.Message
		}
		if req := request.Request; req != nil {
			v.Namespace, v.Pod = req.Namespace, req.Name
			v.DryRun = req.DryRun != nil && *req.DryRun
		}
		_ = verdicts.Encode(v)
	})
	server := &http.Server{Addr: *listen, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = server.Shutdown(shutdown)
	}()
	fmt.Fprintf(os.Stderr, "kubevirt-upstream webhook: serving %s on %s\n", components.PodEvictionValidatePath, *listen)
	if err := server.ListenAndServeTLS(*cert, *key); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
