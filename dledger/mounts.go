package dledger

import (
	"fmt"
	"path"
	"strings"
)

// Mount is one mount of a broker container.
type Mount struct {
	// Source is the host path of a bind mount, or the volume name.
	Source string
	// Target is the path inside the container.
	Target string
	// Volume is true for a named volume (persistent data) and false for a
	// bind mount.
	Volume bool
}

// Container is how one broker container runs its configuration file.
type Container struct {
	// Service names the container in messages (the compose service).
	Service string
	// Home is ROCKETMQ_HOME in the image (/home/rocketmq/rocketmq-<version>
	// in apache/rocketmq images).
	Home string
	// Mounts are the container's bind mounts and volumes.
	Mounts []Mount
	// ConfigArg is the path given to mqbroker -c; a relative path is taken
	// from Home/bin, the image's working directory.
	ConfigArg string
}

// CheckContainer checks that the container runs c as the public templates
// often fail to: the file is bind-mounted inside ROCKETMQ_HOME/conf (a
// mount elsewhere, with -c pointing into ROCKETMQ_HOME, makes the broker
// read the image's stock file), mqbroker's -c names exactly that mount, and
// a named volume is mounted at the rules' VolumeRoot, where Validate
// requires every store path to be. Problems name c's file and the compose
// key at fault ("volumes" or "command").
func (r Rules) CheckContainer(c Conf, ct Container) []Problem {
	r = r.withDefaults()
	var out []Problem
	add := func(key, format string, args ...any) {
		out = append(out, Problem{File: c.File, Key: key, Message: fmt.Sprintf(format, args...)})
	}
	home := path.Clean(ct.Home)
	confDir := home + "/conf"

	var target string
	for _, m := range ct.Mounts {
		if !m.Volume && path.Base(m.Source) == c.File {
			target = path.Clean(m.Target)
			break
		}
	}
	switch {
	case target == "":
		add("volumes", "%s is not mounted into service %s", c.File, ct.Service)
	case ct.Home == "":
		add("volumes", "service %s: ROCKETMQ_HOME is unknown, cannot tell where %s is mounted", ct.Service, c.File)
	case !strings.HasPrefix(target, confDir+"/"):
		add("volumes", "service %s mounts %s at %s, outside ROCKETMQ_HOME/conf (%s): mount it inside ROCKETMQ_HOME (%s/dledger/%s) and point mqbroker -c at it",
			ct.Service, c.File, target, confDir, confDir, c.File)
	}

	arg := ct.ConfigArg
	switch {
	case arg == "":
		add("command", "service %s starts mqbroker without -c: the broker runs on its defaults, not %s", ct.Service, c.File)
	case target != "":
		if !path.IsAbs(arg) {
			arg = path.Join(home, "bin", arg)
		}
		if path.Clean(arg) != target {
			add("command", "service %s runs mqbroker -c %s but %s is mounted at %s: the broker would read another file", ct.Service, ct.ConfigArg, c.File, target)
		}
	}

	volume := false
	for _, m := range ct.Mounts {
		if m.Volume && path.Clean(m.Target) == path.Clean(r.VolumeRoot) {
			volume = true
		}
	}
	if !volume {
		add("volumes", "service %s has no named volume at %s, where storePathRootDir points: the store would die with the container", ct.Service, r.VolumeRoot)
	}
	return out
}
