// Command credprovider runs the kubelet's own image credential provider
// code (k8s.io/kubernetes/pkg/credentialprovider/plugin) the way the kubelet
// does before a pull: it registers the plugins of a CredentialProviderConfig,
// builds the per-pod keyring and looks images up in it. Service account
// tokens for pod identity come from the real API server's TokenRequest API,
// bound to a real Pod, exactly as the kubelet asks for them.
//
//	credprovider -config CONFIG.yaml -bin-dir DIR -kubeconfig KUBECONFIG \
//	    [-rounds N -interval D] POD IMAGE...
//
// POD is NAMESPACE/NAME: an existing Pod, whose ServiceAccount and UID are
// read from the API server. Each round looks every IMAGE up once; the
// output is one JSON object per round, one line each, mapping every image
// to the list of {"username","password"} pairs the kubelet would try.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/kubernetes/pkg/credentialprovider/plugin"
	"k8s.io/kubernetes/pkg/util/parsers"
)

type credential struct {
	Username string `json:"username"`
	Password string `json:"password"`
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "credprovider:", err)
		os.Exit(1)
	}
}

func run() error {
	config := flag.String("config", "", "the kubelet's CredentialProviderConfig")
	binDir := flag.String("bin-dir", "", "the kubelet's --image-credential-provider-bin-dir")
	kubeconfig := flag.String("kubeconfig", "", "kubeconfig of the API server that issues ServiceAccount tokens")
	rounds := flag.Int("rounds", 1, "how many times to look every image up")
	interval := flag.Duration("interval", 0, "pause between rounds")
	flag.Parse()
	if flag.NArg() < 2 || *config == "" || *binDir == "" || *kubeconfig == "" {
		return fmt.Errorf("usage: credprovider -config FILE -bin-dir DIR -kubeconfig FILE [-rounds N -interval D] NAMESPACE/POD IMAGE...")
	}
	restConfig, err := clientcmd.BuildConfigFromFlags("", *kubeconfig)
	if err != nil {
		return err
	}
	client, err := kubernetes.NewForConfig(restConfig)
	if err != nil {
		return err
	}
	ctx := context.Background()
	// What the kubelet passes: a TokenRequest (bound to the pod) and a
	// ServiceAccount getter, both against the API server.
	getToken := func(namespace, name string, tr *authenticationv1.TokenRequest) (*authenticationv1.TokenRequest, error) {
		return client.CoreV1().ServiceAccounts(namespace).CreateToken(ctx, name, tr, metav1.CreateOptions{})
	}
	getServiceAccount := func(namespace, name string) (*v1.ServiceAccount, error) {
		return client.CoreV1().ServiceAccounts(namespace).Get(ctx, name, metav1.GetOptions{})
	}
	if err := plugin.RegisterCredentialProviderPlugins(*config, *binDir, getToken, getServiceAccount); err != nil {
		return err
	}

	namespace, podName, ok := strings.Cut(flag.Arg(0), "/")
	if !ok {
		return fmt.Errorf("%q: expected NAMESPACE/POD", flag.Arg(0))
	}
	pod, err := client.CoreV1().Pods(namespace).Get(ctx, podName, metav1.GetOptions{})
	if err != nil {
		return err
	}
	out := json.NewEncoder(os.Stdout)
	for round := 0; round < *rounds; round++ {
		if round > 0 {
			time.Sleep(*interval)
		}
		// A new keyring per round, as the kubelet builds one per pull.
		keyring := plugin.NewExternalCredentialProviderDockerKeyring(pod.Namespace, pod.Name, string(pod.UID), pod.Spec.ServiceAccountName)
		result := map[string][]credential{}
		for _, image := range flag.Args()[1:] {
			repo, _, _, err := parsers.ParseImageName(image)
			if err != nil {
				return fmt.Errorf("%s: %w", image, err)
			}
			found, _ := keyring.Lookup(repo)
			creds := []credential{}
			for _, c := range found {
				creds = append(creds, credential{Username: c.Username, Password: c.Password})
			}
			result[image] = creds
		}
		if err := out.Encode(result); err != nil {
			return err
		}
	}
	return nil
}
