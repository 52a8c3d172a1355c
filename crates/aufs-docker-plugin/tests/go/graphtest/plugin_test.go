// moby 20.10's graph driver conformance suite (daemon/graphdriver/graphtest)
// run against a running `aufsctl serve docker` through dockerd's own client
// code: graphdriver.GetDriver finds the plugin through a plugin getter and
// talks to it through graphdriver's proxy and pkg/plugins' client.
//
// Built in GOPATH mode against Debian's moby source; the socket is
// AUFS_PLUGIN_SOCKET.
package graphtest

import (
	"fmt"
	"os"
	"testing"

	"github.com/docker/docker/daemon/graphdriver"
	"github.com/docker/docker/daemon/graphdriver/graphtest"
	"github.com/docker/docker/pkg/idtools"
	"github.com/docker/docker/pkg/plugingetter"
	"github.com/docker/docker/pkg/plugins"
	"github.com/docker/go-connections/tlsconfig"
)

// The plugin's name, as dockerd would know it from --storage-driver.
const pluginName = "aufs-rs"

// graphtest asks graphdriver for a driver by name; this built-in name opens
// the plugin the way dockerd does for --storage-driver aufs-rs.
const driverName = "aufs-rs-via-proxy"

// v1Plugin is a legacy plugin found at a socket, as pkg/plugins' registry
// returns it for /run/docker/plugins/NAME.sock.
type v1Plugin struct {
	client *plugins.Client
}

func (p *v1Plugin) Name() string               { return pluginName }
func (p *v1Plugin) ScopedPath(s string) string { return s }
func (p *v1Plugin) IsV1() bool                 { return true }
func (p *v1Plugin) Client() *plugins.Client    { return p.client }

// getter answers for the one plugin, as dockerd's plugin store does.
type getter struct {
	plugin *v1Plugin
}

func (g *getter) Get(name, capability string, mode int) (plugingetter.CompatPlugin, error) {
	if name != pluginName || capability != "GraphDriver" {
		return nil, fmt.Errorf("no plugin %s implementing %s", name, capability)
	}
	return g.plugin, nil
}

func (g *getter) GetAllByCap(capability string) ([]plugingetter.CompatPlugin, error) {
	return []plugingetter.CompatPlugin{g.plugin}, nil
}

func (g *getter) GetAllManagedPluginsByCap(capability string) []plugingetter.CompatPlugin {
	return nil
}

func (g *getter) Handle(capability string, callback func(string, *plugins.Client)) {}

func init() {
	socket := os.Getenv("AUFS_PLUGIN_SOCKET")
	if socket == "" {
		panic("AUFS_PLUGIN_SOCKET is not set")
	}
	client, err := plugins.NewClient("unix://"+socket, &tlsconfig.Options{InsecureSkipVerify: true})
	if err != nil {
		panic(err)
	}
	pg := &getter{plugin: &v1Plugin{client: client}}
	if err := graphdriver.Register(driverName, func(home string, options []string, uidMaps, gidMaps []idtools.IDMap) (graphdriver.Driver, error) {
		return graphdriver.GetDriver(pluginName, pg, graphdriver.Options{
			Root:                home,
			DriverOptions:       options,
			UIDMaps:             uidMaps,
			GIDMaps:             gidMaps,
			ExperimentalEnabled: true,
		})
	}); err != nil {
		panic(err)
	}
}

func TestPluginSetup(t *testing.T) {
	graphtest.GetDriver(t, driverName)
}

func TestPluginCreateEmpty(t *testing.T) {
	graphtest.DriverTestCreateEmpty(t, driverName)
}

func TestPluginCreateBase(t *testing.T) {
	graphtest.DriverTestCreateBase(t, driverName)
}

func TestPluginCreateSnap(t *testing.T) {
	graphtest.DriverTestCreateSnap(t, driverName)
}

func TestPlugin128LayerRead(t *testing.T) {
	graphtest.DriverTestDeepLayerRead(t, 128, driverName)
}

func TestPluginDiffApply10Files(t *testing.T) {
	graphtest.DriverTestDiffApply(t, 10, driverName)
}

func TestPluginChanges(t *testing.T) {
	graphtest.DriverTestChanges(t, driverName)
}

func TestPluginTeardown(t *testing.T) {
	graphtest.PutDriver(t)
}
