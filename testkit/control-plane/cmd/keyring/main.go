// Command keyring prints the registry credentials the kubelet would use to
// pull each image, given a pod's image-pull Secrets. It runs the kubelet's own
// code: the Secrets go through credentialprovider/secrets.MakeDockerKeyring
// and each image through the same ParseImageName and keyring Lookup as the
// kubelet's image manager, with an empty node keyring.
//
//	keyring SECRETS.json IMAGE...
//
// SECRETS.json is a Secret or a List of Secrets as the API server returns
// them (kubectl get secret -o json). The output is one JSON object mapping
// every image to the list of {"username","password"} pairs the kubelet would
// try, in order; an image no Secret covers maps to [].
package main

import (
	"encoding/json"
	"fmt"
	"os"

	v1 "k8s.io/api/core/v1"
	"k8s.io/kubernetes/pkg/credentialprovider"
	"k8s.io/kubernetes/pkg/credentialprovider/secrets"
	"k8s.io/kubernetes/pkg/util/parsers"
)

type credential struct {
	Username string `json:"username"`
	Password string `json:"password"`
}

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "keyring:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) < 2 {
		return fmt.Errorf("usage: keyring SECRETS.json IMAGE...")
	}
	raw, err := os.ReadFile(args[0])
	if err != nil {
		return err
	}
	pullSecrets, err := readSecrets(raw)
	if err != nil {
		return err
	}
	keyring, err := secrets.MakeDockerKeyring(pullSecrets, &credentialprovider.BasicDockerKeyring{})
	if err != nil {
		return err
	}
	out := map[string][]credential{}
	for _, image := range args[1:] {
		repo, _, _, err := parsers.ParseImageName(image)
		if err != nil {
			return fmt.Errorf("%s: %w", image, err)
		}
		found, _ := keyring.Lookup(repo)
		creds := []credential{}
		for _, c := range found {
			creds = append(creds, credential{Username: c.Username, Password: c.Password})
		}
		out[image] = creds
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}

func readSecrets(raw []byte) ([]v1.Secret, error) {
	var head struct {
		Kind string `json:"kind"`
	}
	if err := json.Unmarshal(raw, &head); err != nil {
		return nil, err
	}
	if head.Kind == "Secret" {
		var s v1.Secret
		if err := json.Unmarshal(raw, &s); err != nil {
			return nil, err
		}
		return []v1.Secret{s}, nil
	}
	var list v1.SecretList
	if err := json.Unmarshal(raw, &list); err != nil {
		return nil, err
	}
	return list.Items, nil
}
