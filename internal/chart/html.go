package chart

import (
	"fmt"
	"io"
	"math"

	"github.com/go-echarts/go-echarts/v2/charts"
	"github.com/go-echarts/go-echarts/v2/opts"
)

// HTML writes tl as one interactive page (go-echarts): placements per
// second by outcome on the left axis, the Redis fallback depths on the
// right axis, the outages shaded, a zoom slider under the time axis. The
// page loads the ECharts script from the go-echarts assets host.
func HTML(w io.Writer, tl Timeline) error {
	if err := tl.Validate(); err != nil {
		return err
	}
	line := charts.NewLine()
	line.SetGlobalOptions(
		charts.WithInitializationOpts(opts.Initialization{PageTitle: tl.Title, Width: "1200px", Height: "620px"}),
		charts.WithTitleOpts(opts.Title{Title: tl.Title, Subtitle: tl.Subtitle}),
		charts.WithTooltipOpts(opts.Tooltip{Show: opts.Bool(true), Trigger: "axis"}),
		charts.WithLegendOpts(opts.Legend{Show: opts.Bool(true), Top: "60"}),
		charts.WithGridOpts(opts.Grid{Top: "110", Left: "70", Right: "80"}),
		charts.WithXAxisOpts(opts.XAxis{Type: "value", Name: "seconds since the load started", NameLocation: "middle", NameGap: 28,
			Min: 0, Max: math.Ceil(tl.end())}),
		charts.WithYAxisOpts(opts.YAxis{Type: "value", Name: "placements / s", Position: "left"}),
		charts.WithDataZoomOpts(opts.DataZoom{Type: "slider", XAxisIndex: []int{0}}),
	)
	line.ExtendYAxis(opts.YAxis{Type: "value", Name: "orders held in Redis", Position: "right",
		SplitLine: &opts.SplitLine{Show: opts.Bool(false)}})

	for i, o := range outcomes {
		data := make([]opts.LineData, 0, len(tl.Seconds)+1)
		for _, s := range tl.Seconds {
			data = append(data, opts.LineData{Value: []any{s.T, o.value(s)}})
		}
		last := tl.Seconds[len(tl.Seconds)-1]
		data = append(data, opts.LineData{Value: []any{last.T + 1, o.value(last)}})
		so := []charts.SeriesOpts{
			// "end": the count of [T, T+1) is held until T+1, like PostStep in the PNG.
			charts.WithLineChartOpts(opts.LineChart{Step: "end", YAxisIndex: 0, ShowSymbol: opts.Bool(false)}),
			charts.WithLineStyleOpts(opts.LineStyle{Color: hex(o.color), Width: 2}),
			charts.WithItemStyleOpts(opts.ItemStyle{Color: hex(o.color)}),
		}
		if i == 0 {
			so = append(so, outageAreas(tl.Outages)...)
		}
		line.AddSeries(o.name, data, so...)
	}
	depths := []struct {
		name  string
		color uint32
		dash  string
		value func(Sample) float64
	}{
		{cacheName, cacheColor, "solid", func(s Sample) float64 { return s.CacheSize }},
		{spillName, spillColor, "dashed", func(s Sample) float64 { return s.SpillPending }},
	}
	for _, d := range depths {
		var data []opts.LineData
		for i, run := range runs(tl.Samples) {
			if i > 0 {
				// A null point breaks the line where orderd was not scraped.
				data = append(data, opts.LineData{Value: []any{run[0].T - 0.5, "-"}})
			}
			for _, s := range run {
				data = append(data, opts.LineData{Value: []any{round(s.T), d.value(s)}})
			}
		}
		line.AddSeries(d.name, data,
			charts.WithLineChartOpts(opts.LineChart{YAxisIndex: 1, ShowSymbol: opts.Bool(false), ConnectNulls: opts.Bool(false)}),
			charts.WithLineStyleOpts(opts.LineStyle{Color: hex(d.color), Width: 2, Type: d.dash}),
			charts.WithItemStyleOpts(opts.ItemStyle{Color: hex(d.color)}),
		)
	}
	if err := line.Render(w); err != nil {
		return fmt.Errorf("render html: %w", err)
	}
	return nil
}

// outageAreas marks each outage as a shaded band across the plot.
func outageAreas(outages []Span) []charts.SeriesOpts {
	if len(outages) == 0 {
		return nil
	}
	var areas [][]opts.MarkAreaData
	for _, o := range outages {
		areas = append(areas, []opts.MarkAreaData{{Name: o.Label, XAxis: round(o.From)}, {XAxis: round(o.To)}})
	}
	return []charts.SeriesOpts{
		charts.WithMarkAreaData(areas...),
		charts.WithMarkAreaStyleOpts(opts.MarkAreaStyle{
			ItemStyle: &opts.ItemStyle{Color: "rgba(214,39,40,0.18)"},
			Label:     &opts.Label{Show: opts.Bool(true), Color: "#a01010"},
		}),
	}
}

func hex(c uint32) string { return fmt.Sprintf("#%06x", c) }

func round(v float64) float64 { return math.Round(v*100) / 100 }
