package render

import (
	"fmt"
	"os"
	"strings"
)

// Lang picks the learner's language: flag if set, else the first of LC_ALL,
// LC_MESSAGES and LANG that is set ("ja_JP.UTF-8" is Japanese); English otherwise.
func Lang(flag string) string {
	if flag != "" {
		return flag
	}
	for _, k := range []string{"LC_ALL", "LC_MESSAGES", "LANG"} {
		if v := os.Getenv(k); v != "" {
			if strings.HasPrefix(v, "ja") {
				return "ja"
			}
			return "en"
		}
	}
	return "en"
}

// messages holds every text the lessons engine shows, in English and Japanese.
var messages = map[string][2]string{
	"chapters":        {"Chapters", "章の一覧"},
	"course":          {"Course", "コース"},
	"version":         {"version", "版"},
	"done":            {"done", "完了"},
	"current":         {"current", "現在"},
	"exercise":        {"Exercise", "演習"},
	"task":            {"Your task", "やること"},
	"next-steps":      {"When you are done, run `hako check`. Stuck? `hako hint`.", "できたら `hako check` を実行します。困ったら `hako hint`。"},
	"check-pass":      {"Passed: %s", "合格: %s"},
	"check-fail":      {"Not yet: %s", "まだです: %s"},
	"points":          {"%d of %d points", "%d / %d 点"},
	"command":         {"Command", "コマンド"},
	"expected":        {"Expected", "期待したこと"},
	"found":           {"Found", "実際の結果"},
	"hint":            {"Hint", "ヒント"},
	"after-pass":      {"Well done. `hako next` moves on.", "よくできました。`hako next` で次へ進みます。"},
	"after-pass-last": {"Well done: that was the last exercise of the course.", "よくできました。これがコース最後の演習です。"},
	"after-fail":      {"Fix what is marked, then run `hako check` again. `hako solution` shows the reference solution.", "✗ の項目を直して、もう一度 `hako check` を実行します。`hako solution` で解答例を見られます。"},
	"no-output":       {"(no output)", "(出力なし)"},
	"progress":        {"Progress", "進み具合"},
	"progress-line":   {"%d of %d exercises done", "%d / %d 個の演習が完了"},
	"resume":          {"Next: `hako learn %s` (exercise %s)", "次: `hako learn %s`(演習 %s)"},
	"all-done":        {"Every exercise is done. Congratulations!", "すべての演習が完了しました。おめでとうございます!"},
	"solution":        {"Reference solution", "解答例"},
	"solution-locked": {"The solution is shown after a failed `hako check` (or with `hako solution --force`).", "解答例は `hako check` が一度失敗したあとに表示されます(`hako solution --force` でいつでも表示)。"},
	"hints-for":       {"Hints for %s", "%s のヒント"},
	"reset-done":      {"Reset %s: removed what it created and cleared its progress.", "%s をリセットしました(作成したものを削除し、進み具合を消去)。"},
	"at-first":        {"This is the first exercise.", "これが最初の演習です。"},
	"at-last":         {"This is the last exercise.", "これが最後の演習です。"},
	"now-at":          {"Now at exercise %s.", "演習 %s に移動しました。"},
	"no-such-chapter": {"no chapter %q (see `hako learn`)", "章 %q はありません(`hako learn` で一覧)"},
	"no-such-ex":      {"no exercise %q (see `hako learn`)", "演習 %q はありません(`hako learn` で一覧)"},
	"images-missing":  {"Missing images: %s. With internet: `docker pull IMAGE`. In a classroom without internet, load your instructor's bundle: `docker load -i bundle.tar`.", "イメージがありません: %s。インターネットにつながっていれば `docker pull イメージ名`。つながっていない教室では講師が配るバンドルを読み込みます: `docker load -i bundle.tar`。"},
	"lab-enter":       {"hako lab: exercise %s. `docker` is hako here; each command is re-checked. `exit` leaves.", "hako lab: 演習 %s。ここでは `docker` が hako です。コマンドのたびに自動で確認します。`exit` で終了。"},
	"lab-passed":      {"hako: exercise %s passed! `hako next` moves on.", "hako: 演習 %s に合格しました!`hako next` で次へ。"},
	"lab-left":        {"Left hako lab.", "hako lab を終了しました。"},
	"usage":           {usageEN, usageJA},
	"unknown-cmd":     {"unknown command %q", "不明なコマンドです: %q"},
	"grade-title":     {"Grade report", "採点レポート"},
	"total":           {"Total", "合計"},
	"chapter":         {"Chapter", "第"},
	"passed":          {"passed", "合格"},
	"failed":          {"failed", "不合格"},
}

const usageEN = `hako learn: the lessons

  hako learn [N|NAME]        list chapters and progress, or show chapter N
  hako next | prev           move to the next / previous exercise
  hako goto EXERCISE         go to an exercise (3/run, or 3.1)
  hako check [EXERCISE]      check the current (or named) exercise
  hako hint                  the hints for the current exercise
  hako solution [--force]    the reference solution (after a failed check)
  hako reset [EXERCISE]      remove what the exercise created, clear its progress
  hako progress              what is done
  hako lab                   a shell where docker is hako, re-checking after each command
  hako grade [--chapter N] [--format markdown|json|junit]
  hako course validate DIR | test [DIR] [--bundle FILE] | images [--save FILE]

Flags: --lang ja|en, --course DIR ($HAKO_COURSE), --root DIR ($HAKO_ROOT)
`

const usageJA = `hako learn: レッスン

  hako learn [N|名前]        章の一覧と進み具合、または第 N 章を表示
  hako next | prev           次 / 前の演習へ
  hako goto 演習             演習へ移動 (3/run または 3.1)
  hako check [演習]          現在の(または指定した)演習を確認
  hako hint                  現在の演習のヒント
  hako solution [--force]    解答例(確認に失敗したあと)
  hako reset [演習]          演習で作ったものを削除し、進み具合を消去
  hako progress              完了した演習
  hako lab                   docker が hako になるシェル。コマンドごとに自動確認
  hako grade [--chapter N] [--format markdown|json|junit]
  hako course validate DIR | test [DIR] [--bundle FILE] | images [--save FILE]

フラグ: --lang ja|en, --course DIR ($HAKO_COURSE), --root DIR ($HAKO_ROOT)
`

// Msg returns the message key in lang, formatted with args.
func Msg(lang, key string, args ...any) string {
	m, ok := messages[key]
	if !ok {
		return key
	}
	s := m[0]
	if lang == "ja" {
		s = m[1]
	}
	if len(args) > 0 {
		return fmt.Sprintf(s, args...)
	}
	return s
}
