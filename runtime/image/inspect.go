package image

import (
	"strings"
	"time"
)

// inspectImage is `docker image inspect` output, field for field.
type inspectImage struct {
	ID            string `json:"Id"`
	RepoTags      []string
	RepoDigests   []string
	Parent        string
	Comment       string
	Created       string
	DockerVersion string
	Author        string
	Config        inspectConfig
	Architecture  string
	Variant       string `json:",omitempty"`
	Os            string
	Size          int64
	GraphDriver   inspectDriver
	RootFS        inspectRootFS
	Metadata      inspectMetadata
}

// inspectConfig has the shape of Docker's container config in image inspect.
type inspectConfig struct {
	Hostname     string
	Domainname   string
	User         string
	AttachStdin  bool
	AttachStdout bool
	AttachStderr bool
	ExposedPorts map[string]struct{} `json:",omitempty"`
	Tty          bool
	OpenStdin    bool
	StdinOnce    bool
	Env          []string
	Cmd          []string
	Image        string
	Volumes      map[string]struct{}
	WorkingDir   string
	Entrypoint   []string
	OnBuild      []string
	Labels       map[string]string
	StopSignal   string `json:",omitempty"`
}

type inspectDriver struct {
	Data map[string]string
	Name string
}

type inspectRootFS struct {
	Type   string
	Layers []string
}

type inspectMetadata struct {
	LastTagTime time.Time
}

// InspectJSON returns a value whose JSON is what `docker image inspect` prints
// for img (one element of its array). GraphDriver shows where the layers are
// unpacked: UpperDir the top layer, LowerDir the others, top first.
func (s *Store) InspectJSON(img *Image) any {
	c := img.Config.Config
	created := ""
	if !img.Created.IsZero() {
		created = img.Created.Format(time.RFC3339Nano)
	}
	out := inspectImage{
		ID:          img.ID,
		RepoTags:    append([]string{}, img.RepoTags...),
		RepoDigests: []string{},
		Comment:     img.Config.Comment,
		Created:     created,
		Author:      img.Config.Author,
		Config: inspectConfig{
			User:         c.User,
			ExposedPorts: c.ExposedPorts,
			Env:          c.Env,
			Cmd:          c.Cmd,
			Volumes:      c.Volumes,
			WorkingDir:   c.WorkingDir,
			Entrypoint:   c.Entrypoint,
			Labels:       c.Labels,
			StopSignal:   c.StopSignal,
		},
		Architecture: img.Config.Architecture,
		Variant:      img.Config.Variant,
		Os:           img.Config.OS,
		Size:         img.Size,
		GraphDriver:  inspectDriver{Name: "overlay2", Data: map[string]string{}},
		RootFS:       inspectRootFS{Type: img.Config.RootFS.Type, Layers: append([]string{}, img.DiffIDs...)},
		Metadata:     inspectMetadata{LastTagTime: img.LastTagTime},
	}
	if dirs, err := s.LayerDirs(img); err == nil && len(dirs) > 0 {
		out.GraphDriver.Data["UpperDir"] = dirs[len(dirs)-1]
		var lower []string
		for i := len(dirs) - 2; i >= 0; i-- {
			lower = append(lower, dirs[i])
		}
		if len(lower) > 0 {
			out.GraphDriver.Data["LowerDir"] = strings.Join(lower, ":")
		}
	}
	return out
}
