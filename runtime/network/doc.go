// Package network gives containers their networks: Docker's predefined
// bridge, host and none networks and user-defined bridge networks, with IPAM,
// Linux bridges and veth pairs (netlink), published ports and outbound NAT
// (nftables), and the embedded DNS server of user-defined networks.
package network
