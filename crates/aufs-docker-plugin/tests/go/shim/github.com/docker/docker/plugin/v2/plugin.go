// Package v2 stands in for moby's plugin/v2, which Debian's moby source
// package leaves out. graphdriver's plugin.go names only its Plugin type,
// and only for managed (v2) plugins, to read PluginObj.Config.PropagatedMount;
// a legacy v1 plugin, which is what aufs-rs is, never reaches that branch.
// The type is moby's own field for field as far as that read goes.
package v2 // import "github.com/docker/docker/plugin/v2"

import (
	"github.com/docker/docker/api/types"
	"github.com/docker/docker/pkg/plugins"
)

// Plugin is a managed plugin as graphdriver sees it.
type Plugin struct {
	PluginObj types.Plugin `json:"plugin"`
}

// Name returns the plugin name.
func (p *Plugin) Name() string { return p.PluginObj.Name }

// ScopedPath returns the path scoped to the plugin's rootfs: a managed
// plugin, which this stand-in never is, would scope it.
func (p *Plugin) ScopedPath(s string) string { return s }

// IsV1 is false: this is the managed-plugin type.
func (p *Plugin) IsV1() bool { return false }

// Client is nil: no managed plugin is ever made of this stand-in.
func (p *Plugin) Client() *plugins.Client { return nil }
