package chart

import (
	"fmt"
	"image/color"
	"io"
	"math"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// PNG draws tl as two panels sharing the time axis: placements per second
// by outcome on top, the Redis fallback depths below (gonum/plot has no
// second y axis; a panel of its own keeps both scales readable). The
// outages are shaded in both.
func PNG(w io.Writer, tl Timeline, width, height vg.Length) error {
	img := vgimg.New(width, height)
	if err := drawFigure(tl, img); err != nil {
		return err
	}
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(w); err != nil {
		return fmt.Errorf("write png: %w", err)
	}
	return nil
}

// drawFigure draws tl's two panels on c: the PNG and the HTML page (SVG)
// show the same figure.
func drawFigure(tl Timeline, c vg.CanvasSizer) error {
	if err := tl.Validate(); err != nil {
		return err
	}
	top, err := outcomePlot(tl)
	if err != nil {
		return err
	}
	bottom, err := depthPlot(tl)
	if err != nil {
		return err
	}
	dc := draw.New(c)
	// The heading is drawn on the top panel; give it a larger share.
	tiles := draw.Tiles{Rows: 2, Cols: 1, PadTop: vg.Points(6), PadBottom: vg.Points(6),
		PadLeft: vg.Points(6), PadRight: vg.Points(10), PadY: vg.Points(8)}
	canvases := plot.Align([][]*plot.Plot{{top}, {bottom}}, tiles, dc)
	top.Draw(canvases[0][0])
	bottom.Draw(canvases[1][0])
	return nil
}

func rgb(c uint32) color.RGBA {
	return color.RGBA{R: uint8(c >> 16), G: uint8(c >> 8), B: uint8(c), A: 255}
}

// outageFill is non-premultiplied: a light red whatever lies under it.
var outageFill = color.NRGBA{R: 214, G: 39, B: 40, A: 56}

func outcomePlot(tl Timeline) (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = tl.Title
	if tl.Subtitle != "" {
		p.Title.Text += "\n" + tl.Subtitle
	}
	p.Title.TextStyle.Font.Size = vg.Points(13)
	p.Y.Label.Text = "placements completed per second"
	p.Y.Tick.Marker = countTicks{}
	p.X.Label.Text = ""
	end := tl.end()
	p.X.Tick.Marker = timeTicks{}
	ymax := 1.0
	for _, s := range tl.Seconds {
		for _, o := range outcomes {
			ymax = math.Max(ymax, float64(o.value(s)))
		}
	}
	// Headroom for the legend above the lines.
	ytop := ymax * 1.45
	if err := shade(p, tl.Outages, ytop, true); err != nil {
		return nil, err
	}
	p.Add(plotter.NewGrid())
	for _, o := range outcomes {
		xys := make(plotter.XYs, 0, len(tl.Seconds)+1)
		for _, s := range tl.Seconds {
			xys = append(xys, plotter.XY{X: float64(s.T), Y: float64(o.value(s))})
		}
		last := tl.Seconds[len(tl.Seconds)-1]
		xys = append(xys, plotter.XY{X: float64(last.T + 1), Y: float64(o.value(last))})
		l, err := plotter.NewLine(xys)
		if err != nil {
			return nil, fmt.Errorf("%s line: %w", o.name, err)
		}
		l.StepStyle = plotter.PostStep
		l.Color = rgb(o.color)
		l.Width = vg.Points(1.6)
		p.Add(l)
		p.Legend.Add(o.name, l)
	}
	legend(p)
	// Last: Add widens the axes to the data it is given.
	p.X.Min, p.X.Max = 0, end
	p.Y.Min, p.Y.Max = 0, ytop
	return p, nil
}

func depthPlot(tl Timeline) (*plot.Plot, error) {
	p := plot.New()
	p.Y.Label.Text = "orders held in Redis"
	p.Y.Tick.Marker = countTicks{}
	p.X.Label.Text = "seconds since the load started"
	p.X.Tick.Marker = timeTicks{}
	ymax := 1.0
	for _, s := range tl.Samples {
		ymax = math.Max(ymax, math.Max(s.CacheSize, s.SpillPending))
	}
	ytop := ymax * 1.18
	if err := shade(p, tl.Outages, ytop, false); err != nil {
		return nil, err
	}
	p.Add(plotter.NewGrid())
	lines := []struct {
		name  string
		color uint32
		dash  bool
		value func(Sample) float64
	}{
		{cacheName, cacheColor, false, func(s Sample) float64 { return s.CacheSize }},
		{spillName, spillColor, true, func(s Sample) float64 { return s.SpillPending }},
	}
	for _, ln := range lines {
		var first *plotter.Line
		for _, run := range runs(tl.Samples) {
			xys := make(plotter.XYs, len(run))
			for i, s := range run {
				xys[i] = plotter.XY{X: s.T, Y: ln.value(s)}
			}
			l, err := plotter.NewLine(xys)
			if err != nil {
				return nil, fmt.Errorf("%s line: %w", ln.name, err)
			}
			l.Color = rgb(ln.color)
			l.Width = vg.Points(1.6)
			if ln.dash {
				l.Dashes = []vg.Length{vg.Points(5), vg.Points(3)}
			}
			p.Add(l)
			if first == nil {
				first = l
			}
		}
		if first != nil {
			p.Legend.Add(ln.name, first)
		}
	}
	if len(tl.Samples) == 0 {
		p.Title.Text = "(no metrics samples)"
	}
	legend(p)
	// Last: Add widens the axes to the data it is given.
	p.X.Min, p.X.Max = 0, tl.end()
	p.Y.Min, p.Y.Max = 0, ytop
	return p, nil
}

func legend(p *plot.Plot) {
	p.Legend.Top = true
	p.Legend.Left = false
	p.Legend.XOffs = -vg.Points(4)
	p.Legend.Padding = vg.Points(2)
	p.Legend.TextStyle.Font.Size = vg.Points(10)
}

// shade adds a filled band for each outage, from 0 to ymax, labelled at
// the top when label is set.
func shade(p *plot.Plot, outages []Span, ymax float64, label bool) error {
	var texts []string
	var at plotter.XYs
	for _, o := range outages {
		poly, err := plotter.NewPolygon(plotter.XYs{{X: o.From, Y: 0}, {X: o.To, Y: 0}, {X: o.To, Y: ymax}, {X: o.From, Y: ymax}})
		if err != nil {
			return fmt.Errorf("outage band: %w", err)
		}
		poly.Color = outageFill
		poly.LineStyle.Width = 0
		p.Add(poly)
		texts = append(texts, o.Label)
		at = append(at, plotter.XY{X: o.From, Y: ymax * 0.97})
	}
	if !label || len(texts) == 0 {
		return nil
	}
	labels, err := plotter.NewLabels(plotter.XYLabels{XYs: at, Labels: texts})
	if err != nil {
		return fmt.Errorf("outage labels: %w", err)
	}
	for i := range labels.TextStyle {
		labels.TextStyle[i].Color = rgb(0xa01010)
		labels.TextStyle[i].Font.Size = vg.Points(10)
		labels.TextStyle[i].YAlign = draw.YTop
		labels.Offset = vg.Point{X: vg.Points(3)}
	}
	p.Add(labels)
	return nil
}

// timeTicks labels the time axis every 5 or 10 seconds (every 30 on long
// runs), with unlabelled ticks between.
type timeTicks struct{}

// Ticks implements plot.Ticker.
func (timeTicks) Ticks(lo, hi float64) []plot.Tick {
	step := 5.0
	switch {
	case hi-lo > 240:
		step = 30
	case hi-lo > 60:
		step = 10
	}
	var ticks []plot.Tick
	for v := math.Ceil(lo/step) * step; v <= hi; v += step {
		ticks = append(ticks, plot.Tick{Value: v, Label: fmt.Sprintf("%.0f", v)})
		if v+step/2 <= hi {
			ticks = append(ticks, plot.Tick{Value: v + step/2})
		}
	}
	return ticks
}

// countTicks labels a count axis with whole numbers in steps of 1, 2 or 5
// times a power of ten, about five labels.
type countTicks struct{}

// Ticks implements plot.Ticker.
func (countTicks) Ticks(lo, hi float64) []plot.Tick {
	step := 1.0
	for p := 1.0; p < 1e12; p *= 10 {
		if s := niceStep(p, (hi-lo)/6); s > 0 {
			step = s
			break
		}
	}
	var ticks []plot.Tick
	for v := math.Ceil(lo/step) * step; v <= hi; v += step {
		ticks = append(ticks, plot.Tick{Value: v, Label: fmt.Sprintf("%.0f", v)})
	}
	return ticks
}

// niceStep returns the first of 1p, 2p, 5p that is at least want, or 0.
func niceStep(p, want float64) float64 {
	for _, m := range []float64{1, 2, 5} {
		if m*p >= want {
			return m * p
		}
	}
	return 0
}
