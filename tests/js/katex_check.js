// Reads a JSON list of {where, tex, display} from stdin and parses each with KaTeX.
// Prints a JSON list of the failures ({where, tex, error}); exit status 0 either way.
const katex = require('katex');
let input = '';
process.stdin.on('data', (chunk) => { input += chunk; });
process.stdin.on('end', () => {
  const failures = [];
  for (const item of JSON.parse(input)) {
    try {
      katex.renderToString(item.tex, { displayMode: item.display, throwOnError: true, strict: 'error' });
    } catch (err) {
      failures.push({ where: item.where, tex: item.tex, error: String(err.message || err) });
    }
  }
  process.stdout.write(JSON.stringify(failures));
});
