// Regenerates assets/world-land.path (the dashboard's world outline):
//   npm install world-atlas@2 topojson-client@3 d3-geo@3 && node scripts/world-map.mjs > assets/world-land.path
// Natural Earth 110m land (public domain) via world-atlas (ISC), projected
// equirectangular onto 720x360 with d3-geo (ISC), which cuts the antimeridian.
import { geoEquirectangular, geoPath } from 'd3-geo';
import { feature } from 'topojson-client';
import fs from 'node:fs';
const topo = JSON.parse(fs.readFileSync('node_modules/world-atlas/land-110m.json'));
const land = feature(topo, topo.objects.land);
const proj = geoEquirectangular().scale(720 / (2 * Math.PI)).translate([360, 180]);
const path = geoPath(proj).digits(1);
process.stdout.write(path(land));
