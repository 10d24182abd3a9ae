package container

import (
	"encoding/binary"
	"strconv"
)

// Docker names a container it was not given a name for "adjective_scientist";
// hako follows the habit with its own short lists.
var (
	adjectives = []string{
		"admiring", "agile", "amazing", "bold", "brave", "calm", "clever", "dazzling", "eager",
		"elegant", "fervent", "festive", "focused", "gallant", "gentle", "happy", "jolly", "keen",
		"kind", "lucid", "modest", "nifty", "noble", "peaceful", "quirky", "serene", "sharp",
		"tender", "upbeat", "vibrant", "wizardly", "youthful", "zealous",
	}
	people = []string{
		"babbage", "curie", "darwin", "einstein", "euler", "fermi", "franklin", "galileo",
		"hamilton", "hopper", "hypatia", "kepler", "lamport", "lovelace", "matsumoto", "meitner",
		"newton", "noether", "okazaki", "pascal", "ritchie", "sato", "shannon", "takahashi",
		"thompson", "torvalds", "turing", "wozniak", "yonath", "yukawa",
	}
)

// RandomName returns a name for an unnamed container; retry > 0 appends a
// number, as Docker does after a collision.
func RandomName(retry int) string {
	var b [8]byte
	randomBytes(b[:])
	n := binary.LittleEndian.Uint64(b[:])
	name := adjectives[n%uint64(len(adjectives))] + "_" + people[(n/1024)%uint64(len(people))]
	if retry > 0 {
		name += strconv.Itoa(int(n % 10))
	}
	return name
}
