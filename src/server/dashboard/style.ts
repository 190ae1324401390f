// Dashboard stylesheet (served at /assets/dashboard.css). Responsive: cards reflow from one
// column on a phone to a row on a wide screen; tables scroll sideways inside their box.
export const PAGE_CSS = `:root{--bg:#0b1020;--panel:#131a2e;--line:#243050;--text:#e6ebf5;--muted:#8a96b3;--accent:#4f8cff;--ok:#2ecc71;--off:#6b7280;--warn:#f59e0b;color-scheme:dark}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--text);font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,Ubuntu,sans-serif}
header{display:flex;flex-wrap:wrap;gap:.5rem 1.5rem;align-items:center;justify-content:space-between;padding:1rem clamp(1rem,3vw,2.5rem);border-bottom:1px solid var(--line);background:var(--panel)}
.brand{display:flex;align-items:center;gap:.6rem}.logo{font-size:1.6rem;color:var(--accent)}
h1{font-size:1.25rem;margin:0}h1 .sub{color:var(--muted);font-weight:400}
h2{font-size:1.05rem;margin:0 0 .6rem}
.meta{display:flex;gap:1rem;flex-wrap:wrap;font-size:.9rem}
main{padding:1rem clamp(1rem,3vw,2.5rem);max-width:1400px;margin:0 auto}
section{margin-bottom:1.5rem}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(160px,1fr));gap:.8rem}
.card{background:var(--panel);border:1px solid var(--line);border-radius:10px;padding:.9rem 1rem}
.card .label{color:var(--muted);font-size:.8rem;text-transform:uppercase;letter-spacing:.04em}
.card .value{font-size:1.9rem;font-weight:650;font-variant-numeric:tabular-nums}
.card .foot{color:var(--muted);font-size:.85rem}
.scroll{overflow-x:auto;border:1px solid var(--line);border-radius:10px;background:var(--panel)}
table{width:100%;border-collapse:collapse;font-variant-numeric:tabular-nums}
th,td{text-align:left;padding:.5rem .75rem;border-bottom:1px solid var(--line);white-space:nowrap}
th{color:var(--muted);font-weight:500;font-size:.8rem;text-transform:uppercase;letter-spacing:.04em}
tbody tr:last-child td{border-bottom:0}
tbody tr:hover{background:#182242}
.num{text-align:right}
td.addr{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}
.dot{display:inline-block;width:.6rem;height:.6rem;border-radius:50%;margin-right:.4rem;background:var(--off)}
.dot.on{background:var(--ok)}
.tag{display:inline-block;margin:0 .25rem .15rem 0;padding:.05rem .45rem;border-radius:999px;background:#1d2b52;color:#b9ccff;font-size:.8rem;cursor:pointer;border:0;font:inherit;font-size:.8rem}
.tag:hover{background:#2a3d70}
.task{color:var(--warn)}
.bar{display:flex;flex-wrap:wrap;align-items:center;justify-content:space-between;gap:.5rem}
.filter{display:flex;gap:.4rem;margin-bottom:.6rem}
input,select,button{font:inherit;color:var(--text);background:var(--panel);border:1px solid var(--line);border-radius:8px;padding:.35rem .6rem}
input{min-width:0;width:14rem;max-width:50vw}
button{cursor:pointer;background:var(--accent);border-color:var(--accent);color:#fff}
button.ghost{background:transparent;color:var(--text);border-color:var(--line)}
button:disabled{opacity:.4;cursor:default}
.pager{display:flex;flex-wrap:wrap;align-items:center;gap:.75rem;margin-top:.6rem}
.per{margin-left:auto;color:var(--muted);font-size:.9rem}
.muted{color:var(--muted)}
.error{background:#3b1420;border:1px solid #7f1d1d;color:#fecaca;padding:.5rem .75rem;border-radius:8px}
.empty{color:var(--muted);text-align:center;padding:1.25rem}
footer{padding:1rem clamp(1rem,3vw,2.5rem) 2rem;font-size:.85rem}
a{color:var(--accent)}
@media (max-width:600px){body{font-size:14px}.st-text{position:absolute;width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0)}.card .value{font-size:1.5rem}th,td{padding:.45rem .5rem}.per{margin-left:0}input{width:100%}.filter{width:100%}}
`;
