// Loads async_kernel into Pyodide (offline) and executes one cell through the callback
// interface.  Usage: node run_cell.mjs <node_modules/pyodide dir> <wheels dir> <repo dir>
// Prints one JSON line: what the host callback received.
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const [pyodideDir, wheelsDir, repoDir] = process.argv.slice(2);
const { loadPyodide } = await import(pathToFileURL(join(pyodideDir, "pyodide.mjs")).href);
const pyodide = await loadPyodide({ indexURL: pyodideDir + "/" });

function copyTree(from, to) {
  pyodide.FS.mkdirTree(to);
  for (const name of readdirSync(from)) {
    if (name === "__pycache__") continue;
    const path = join(from, name);
    if (statSync(path).isDirectory()) copyTree(path, to + "/" + name);
    else pyodide.FS.writeFile(to + "/" + name, readFileSync(path));
  }
}
pyodide.FS.mkdirTree("/wheels");
for (const name of readdirSync(wheelsDir)) {
  if (name.endsWith(".whl")) pyodide.FS.writeFile("/wheels/" + name, readFileSync(join(wheelsDir, name)));
}
copyTree(join(repoDir, "async_kernel"), "/src/async_kernel");
copyTree(join(repoDir, "tests", "pyodide", "shims"), "/shims");

const result = await pyodide.runPythonAsync(readFileSync(join(repoDir, "tests", "pyodide", "session.py"), "utf8"));
console.log(result);
