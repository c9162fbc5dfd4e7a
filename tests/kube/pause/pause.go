// The sandbox ("pause") container of every pod on the test node: it holds the pod's
// namespaces, reaps orphaned children and exits on SIGINT or SIGTERM. No registry here
// serves registry.k8s.io/pause, so tests/kube/build.sh builds this one (static, no libc).
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	signals := make(chan os.Signal, 8)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	for received := range signals {
		if received != syscall.SIGCHLD {
			os.Exit(0)
		}
		for {
			pid, err := syscall.Wait4(-1, nil, syscall.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
		}
	}
}
