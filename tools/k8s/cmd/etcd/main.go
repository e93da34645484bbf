// Command etcd is the etcd server, built from go.etcd.io/etcd/server/v3 at the version
// Kubernetes itself depends on (Debian's etcd-server is 3.4, too old for this API server).
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
