package console

import (
	"regexp"
	"strconv"
	"testing"
	"time"
)

// TestThemeChartDayLabelsReadable: the chart's date labels are a week
// apart (the last one, today, included) and none runs past the chart's
// right edge, where it was cut off and overlapped the one before.
func TestThemeChartDayLabelsReadable(t *testing.T) {
	from := time.Date(2026, 11, 3, 0, 0, 0, 0, time.UTC)
	svg, _ := themeChart(nil, from, 30)
	labels := regexp.MustCompile(`<text x="([0-9.]+)" y="\d+" font-size="11" text-anchor="(middle|end)"[^>]*>(\d+ [A-Z][a-z]{2})</text>`).FindAllStringSubmatch(string(svg), -1)
	if len(labels) < 4 {
		t.Fatalf("%d date labels:\n%s", len(labels), svg)
	}
	const width, charWidth = 640, 7.0 // font-size 11: a character is at most ~7 units wide
	prevRight := -1.0
	for _, l := range labels {
		x, _ := strconv.ParseFloat(l[1], 64)
		w := charWidth * float64(len(l[3]))
		left, right := x-w/2, x+w/2
		if l[2] == "end" {
			left, right = x-w, x
		}
		if left < prevRight || right > width {
			t.Errorf("label %q spans %.0f to %.0f: overlaps the one before (ends %.0f) or passes the edge (%d)", l[3], left, right, prevRight, width)
		}
		prevRight = right
	}
	if last := labels[len(labels)-1][3]; last != from.AddDate(0, 0, 29).Format("2 Jan") {
		t.Errorf("last label %q, want today's", last)
	}
}
