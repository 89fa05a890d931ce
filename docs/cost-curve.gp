set terminal svg size 1200,420 dynamic font "sans,11"
set output "/work/main/docs/cost-curve.svg"
set multiplot layout 1,3 title 'deja: cost against entries (1536-d)'
set logscale x
set xlabel 'entries'
set key top left
set grid
set title 'lookup latency (us)'
plot 'cost-curve.dat' index 0 using 1:2 with linespoints title 'int8 p50 1 conn', 'cost-curve.dat' index 0 using 1:3 with linespoints title 'int8 p99 1 conn', 'cost-curve.dat' index 0 using 1:4 with linespoints title 'int8 p99 16 conn'
set title 'RssAnon per entry (bytes)'
plot 'cost-curve.dat' index 0 using 1:5 with linespoints title 'int8 per entry'
set title 'restart until serving (s)'
plot 'cost-curve.dat' index 0 using 1:6 with linespoints title 'int8 with snapshot', 'cost-curve.dat' index 0 using 1:7 with linespoints title 'int8 without snapshot'
unset multiplot
