// Package cgroup puts a container's processes in a control group and limits what
// they may use: memory, CPU time and the number of processes.
//
// # What a cgroup is
//
// A control group is a directory in a special file system. Every process belongs
// to exactly one directory of each hierarchy; a child process starts where its
// parent is. Writing a PID to a directory's cgroup.procs file moves that process
// (all its threads) there, and reading cgroup.procs lists the members. The other
// files of the directory belong to controllers: memory.max (or
// memory.limit_in_bytes) caps the memory the members may charge, pids.max caps how
// many tasks they may create, cpu.max (or cpu.cfs_quota_us) gives them a slice of
// CPU time per period. A limit applies to the whole subtree below the directory.
// A directory is removed with rmdir once no process is left in it; the files in it
// are not real files and need no deleting.
//
// # Version 1: one hierarchy per controller
//
// The first design (Linux 2.6.24) mounts each controller, or a few together, as a
// separate tree: /sys/fs/cgroup/memory, /sys/fs/cgroup/cpu, /sys/fs/cgroup/pids and
// so on. A process has a position in every tree, so a container runtime creates
// the same path, here <mount>/hako/<container id>, in each of them and writes the
// container's PID into the cgroup.procs of every one. Some controllers keep their
// own quirks: a new cpuset directory starts with empty cpuset.cpus and cpuset.mems,
// and no process can join it until they are copied from the parent; the memory
// controller counts memory+swap in a separate memory.memsw.limit_in_bytes that
// exists only with swap accounting.
//
// # Version 2: one unified tree
//
// cgroup v2 (Linux 4.5, the default of current distributions) mounts one tree,
// usually at /sys/fs/cgroup itself, with file names made regular (memory.max,
// pids.max, cpu.max, cpu.weight). A directory's cgroup.controllers lists the
// controllers it may use; a parent hands controllers down by writing "+memory +pids"
// to its cgroup.subtree_control, which makes the corresponding files appear in its
// children. Processes live only in leaves (the "no internal processes" rule, from
// which the root is exempt), so hako enables controllers in the root and in
// /sys/fs/cgroup/hako and puts each container in /sys/fs/cgroup/hako/<id>. Newer
// kernels add cgroup.kill (5.14), which kills every member at once, and
// cgroup.freeze (5.2), which pauses them.
//
// # Hybrid
//
// During the migration systemd offered a hybrid layout: /sys/fs/cgroup is a tmpfs
// holding the v1 hierarchies, and a v2 tree is mounted at /sys/fs/cgroup/unified
// for process tracking only, with no (or few) controllers in it. On such a machine
// the limits must be set through the v1 hierarchies; hako treats hybrid as v1 and
// leaves the unified tree alone.
//
// Which layout a machine has is read from /proc/self/mountinfo (the file systems of
// type cgroup and cgroup2 and where they are mounted), never guessed from paths.
//
// # Order
//
// Limits are written before any process joins, so a container never runs a single
// instruction unconstrained: the runtime creates the group with [New], starts the
// container's first process blocked, adds it with [Manager.Add] (or lets it write
// its own PID into [Manager.ProcsFiles]), then lets it run.
package cgroup
