// Package chapters is hako's built-in course: chapters 3 ("Start a web
// server in 5 minutes") and 4 ("Basic operations"), in English and Japanese,
// embedded in hako-learn. See lessons/course for the format.
package chapters

import "embed"

// FS holds the course: course.json and one folder per chapter.
//
//go:embed course.json 03-webserver 04-basics
var FS embed.FS
