package oci

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
)

type userInfo struct {
	uid, gid uint32
	groups   []uint32
	home     string
}

// lookupUser resolves Docker's --user forms (name, uid, name:group, uid:gid)
// against the container's own /etc/passwd and /etc/group, as Docker does.
func lookupUser(spec string) (userInfo, error) {
	userPart, groupPart, hasGroup := strings.Cut(spec, ":")
	passwd := readColonFile("/etc/passwd")
	groups := readColonFile("/etc/group")
	u := userInfo{home: "/"}
	var name string
	if n, err := strconv.ParseUint(userPart, 10, 32); err == nil {
		u.uid = uint32(n)
		for _, e := range passwd {
			if len(e) >= 6 && e[2] == userPart {
				name = e[0]
				if g, err := strconv.ParseUint(e[3], 10, 32); err == nil {
					u.gid = uint32(g)
				}
				u.home = e[5]
				break
			}
		}
	} else {
		found := false
		for _, e := range passwd {
			if len(e) >= 6 && e[0] == userPart {
				uid, err1 := strconv.ParseUint(e[2], 10, 32)
				gid, err2 := strconv.ParseUint(e[3], 10, 32)
				if err1 != nil || err2 != nil {
					continue
				}
				u.uid, u.gid, u.home, name, found = uint32(uid), uint32(gid), e[5], e[0], true
				break
			}
		}
		if !found {
			return u, fmt.Errorf("unable to find user %s: no matching entries in passwd file", userPart)
		}
	}
	if hasGroup {
		if n, err := strconv.ParseUint(groupPart, 10, 32); err == nil {
			u.gid = uint32(n)
		} else {
			found := false
			for _, e := range groups {
				if len(e) >= 3 && e[0] == groupPart {
					if g, err := strconv.ParseUint(e[2], 10, 32); err == nil {
						u.gid, found = uint32(g), true
						break
					}
				}
			}
			if !found {
				return u, fmt.Errorf("unable to find group %s: no matching entries in group file", groupPart)
			}
		}
	}
	if name != "" {
		for _, e := range groups {
			if len(e) < 4 {
				continue
			}
			for _, m := range strings.Split(e[3], ",") {
				if m == name {
					if g, err := strconv.ParseUint(e[2], 10, 32); err == nil && uint32(g) != u.gid {
						u.groups = append(u.groups, uint32(g))
					}
				}
			}
		}
	}
	return u, nil
}

func readColonFile(path string) [][]string {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	var out [][]string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		out = append(out, strings.Split(line, ":"))
	}
	return out
}
