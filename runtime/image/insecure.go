package image

import (
	"encoding/json"
	"os"
	"strings"
)

// plainHTTP reports whether a registry may be reached without TLS: one on
// localhost or 127.0.0.0/8 (as Docker allows), or one the configuration lists
// as insecure, as Docker's daemon.json "insecure-registries" does — for a
// classroom registry on the room's network. The list comes from
// $HAKO_INSECURE_REGISTRIES (comma-separated host:port) and from the
// "insecure-registries" array of $HAKO_CONFIG (default /etc/hako/config.json).
func plainHTTP(norm string) bool {
	if loopbackRegistry(norm) {
		return true
	}
	host, _, _ := strings.Cut(norm, "/")
	for _, h := range insecureRegistries() {
		if strings.EqualFold(strings.TrimSpace(h), host) {
			return true
		}
	}
	return false
}

func insecureRegistries() []string {
	var list []string
	if env := os.Getenv("HAKO_INSECURE_REGISTRIES"); env != "" {
		list = append(list, strings.Split(env, ",")...)
	}
	path := os.Getenv("HAKO_CONFIG")
	if path == "" {
		path = "/etc/hako/config.json"
	}
	if b, err := os.ReadFile(path); err == nil {
		var cfg struct {
			Insecure []string `json:"insecure-registries"`
		}
		if json.Unmarshal(b, &cfg) == nil {
			list = append(list, cfg.Insecure...)
		}
	}
	return list
}
