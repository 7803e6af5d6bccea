package chart

import (
	"bytes"
	"fmt"
	"html/template"
	"io"
	"math"

	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/vgsvg"
)

// HTML writes tl as one self-contained page: the same two-panel figure as
// the PNG, drawn as inline SVG (so it scales without blurring and prints),
// and the per-second figures in a table under it. The page loads nothing:
// no script, no font, no stylesheet from anywhere, so it opens offline,
// from a report directory copied off a CI machine. A long run gets a wider
// figure (the page scrolls sideways) rather than a zoom control.
func HTML(w io.Writer, tl Timeline) error {
	if err := tl.Validate(); err != nil {
		return err
	}
	// 8 points per second, at least the PNG's 1200 × 620 pixels (at 96 dpi).
	width := vg.Length(math.Max(900, 8*tl.end())) * vg.Inch / 72
	svg := vgsvg.New(width, 465)
	if err := drawFigure(tl, svg); err != nil {
		return err
	}
	var fig bytes.Buffer
	if _, err := svg.WriteTo(&fig); err != nil {
		return fmt.Errorf("draw svg: %w", err)
	}
	rows := make([]htmlRow, 0, len(tl.Seconds))
	samples := map[int]Sample{}
	for _, s := range tl.Samples {
		samples[int(math.Floor(s.T))] = s
	}
	for _, s := range tl.Seconds {
		r := htmlRow{Second: s, Outage: inOutage(tl.Outages, float64(s.T))}
		if smp, ok := samples[s.T]; ok {
			r.Cache, r.Spill = fmt.Sprintf("%.0f", smp.CacheSize), fmt.Sprintf("%.0f", smp.SpillPending)
		}
		rows = append(rows, r)
	}
	err := page.Execute(w, htmlData{Timeline: tl, Figure: template.HTML(stripXMLHeader(fig.Bytes())), Rows: rows,
		Outcomes: []string{outcomes[0].name, outcomes[1].name, outcomes[2].name, outcomes[3].name}, CacheName: cacheName, SpillName: spillName})
	if err != nil {
		return fmt.Errorf("render html: %w", err)
	}
	return nil
}

type htmlRow struct {
	Second
	Outage       string
	Cache, Spill string
}

type htmlData struct {
	Timeline
	Figure               template.HTML
	Rows                 []htmlRow
	Outcomes             []string
	CacheName, SpillName string
}

func inOutage(outages []Span, t float64) string {
	for _, o := range outages {
		if t+1 > o.From && t < o.To {
			return o.Label
		}
	}
	return ""
}

// stripXMLHeader drops the <?xml …?> declaration, which has no place
// inside an HTML page.
func stripXMLHeader(svg []byte) []byte {
	if i := bytes.Index(svg, []byte("<svg")); i > 0 {
		return svg[i:]
	}
	return svg
}

var page = template.Must(template.New("timeline").Parse(`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; img-src data:; font-src data:">
<title>{{.Title}}</title>
<style>
body { font: 14px/1.4 system-ui, sans-serif; margin: 1rem 1.5rem; color: #1d2330; }
.figure { overflow-x: auto; border: 1px solid #dde1e8; }
.figure svg { display: block; }
table { border-collapse: collapse; margin-top: .5rem; }
th, td { padding: .15rem .6rem; border-bottom: 1px solid #eceef2; text-align: right; font-variant-numeric: tabular-nums; }
tr.outage td { background: #fbe3e3; }
th { background: #eef0f4; }
</style>
</head>
<body>
<h1>{{.Title}}</h1>
{{if .Subtitle}}<p>{{.Subtitle}}</p>{{end}}
<div class="figure">{{.Figure}}</div>
<details>
<summary>Every second in numbers (placements completed in the second; the Redis depths sampled in it; outage rows shaded)</summary>
<table>
<thead><tr><th>second</th>{{range .Outcomes}}<th>{{.}}</th>{{end}}<th>{{.CacheName}}</th><th>{{.SpillName}}</th><th>outage</th></tr></thead>
<tbody>
{{range .Rows}}<tr{{if .Outage}} class="outage"{{end}}><td>{{.T}}</td><td>{{.C201}}</td><td>{{.C202}}</td><td>{{.C503}}</td><td>{{.Failed}}</td><td>{{.Cache}}</td><td>{{.Spill}}</td><td>{{.Outage}}</td></tr>
{{end}}
</tbody>
</table>
</details>
</body>
</html>
`))
