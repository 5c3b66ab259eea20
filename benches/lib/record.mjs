// Inserts a run's report at the top of the runs in RESULTS.md (newest first):
// node record.mjs RESULTS.md REPORT.md
import { readFileSync, writeFileSync } from 'node:fs';

const [resultsPath, reportPath] = process.argv.slice(2);
const MARK = '<!-- runs below, newest first; benches/run inserts each full run here -->';
const results = readFileSync(resultsPath, 'utf8');
const report = readFileSync(reportPath, 'utf8').trim();
const at = results.indexOf(MARK);
if (at < 0) {
  console.error(`${resultsPath} has no line ${MARK}`);
  process.exit(1);
}
const cut = at + MARK.length;
writeFileSync(resultsPath, `${results.slice(0, cut)}\n\n${report}\n${results.slice(cut)}`);
