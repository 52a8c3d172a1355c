// Command goref prints reference outputs of moby's pkg/archive and
// pkg/directory for the aufs-archive comparison tests.
//
//	goref changes UPPER [LOWER...]   archive.Changes, one "K /path" a line, sorted
//	goref changes-size UPPER [LOWER...]  archive.ChangesSize of those changes
//	goref changes-dirs NEW [OLD]     archive.ChangesDirs, sorted
//	goref size DIR                   directory.Size
//	goref untar TAR DEST             archive.UntarUncompressed
//	goref tar DIR                    archive.Tar (uncompressed) to stdout
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"sort"

	"github.com/docker/docker/pkg/archive"
	"github.com/docker/docker/pkg/directory"
)

func die(err error) {
	fmt.Fprintln(os.Stderr, "goref:", err)
	os.Exit(1)
}

func main() {
	if len(os.Args) < 3 {
		die(fmt.Errorf("usage: goref changes|changes-size|changes-dirs|size|untar|tar ARGS"))
	}
	switch os.Args[1] {
	case "changes", "changes-size":
		ch, err := archive.Changes(os.Args[3:], os.Args[2])
		if err != nil {
			die(err)
		}
		if os.Args[1] == "changes-size" {
			fmt.Println(archive.ChangesSize(os.Args[2], ch))
			return
		}
		sort.SliceStable(ch, func(i, j int) bool { return ch[i].Path < ch[j].Path })
		for _, c := range ch {
			fmt.Println(c.String())
		}
	case "changes-dirs":
		old := ""
		if len(os.Args) > 3 {
			old = os.Args[3]
		}
		ch, err := archive.ChangesDirs(os.Args[2], old)
		if err != nil {
			die(err)
		}
		sort.SliceStable(ch, func(i, j int) bool { return ch[i].Path < ch[j].Path })
		for _, c := range ch {
			fmt.Println(c.String())
		}
	case "size":
		n, err := directory.Size(context.Background(), os.Args[2])
		if err != nil {
			die(err)
		}
		fmt.Println(n)
	case "untar":
		f, err := os.Open(os.Args[2])
		if err != nil {
			die(err)
		}
		defer f.Close()
		if err := archive.UntarUncompressed(f, os.Args[3], &archive.TarOptions{}); err != nil {
			die(err)
		}
	case "tar":
		rc, err := archive.Tar(os.Args[2], archive.Uncompressed)
		if err != nil {
			die(err)
		}
		defer rc.Close()
		if _, err := io.Copy(os.Stdout, rc); err != nil {
			die(err)
		}
	default:
		die(fmt.Errorf("unknown mode %q", os.Args[1]))
	}
}
