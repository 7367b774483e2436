/* robustbench_lite leaderboard site: sorting, search, filters and tooltips. No dependencies. */
(function () {
  "use strict";
  var status = document.getElementById("status");
  function announce(text) { if (status) { status.textContent = text; } }

  /* -- sorting: a button in each column header; aria-sort on the header ------------------------ */
  function cellValue(row, index) {
    var cell = row.children[index];
    return cell ? cell.getAttribute("data-v") || "" : "";
  }
  function sortTable(table, th) {
    var headers = Array.prototype.slice.call(table.tHead.rows[0].cells);
    var index = headers.indexOf(th);
    var numeric = th.getAttribute("data-type") === "num";
    var current = th.getAttribute("aria-sort");
    var dir = current === "ascending" ? "descending" : current === "descending" ? "ascending"
      : (numeric && th.getAttribute("data-key") !== "rank" ? "descending" : "ascending");
    headers.forEach(function (h) { h.removeAttribute("aria-sort"); });
    th.setAttribute("aria-sort", dir);
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    var sign = dir === "ascending" ? 1 : -1;
    rows.sort(function (a, b) {
      var x = cellValue(a, index), y = cellValue(b, index);
      if (x === "" || y === "") { return x === y ? 0 : (x === "" ? 1 : -1); }  /* missing values last */
      if (numeric) { return sign * (parseFloat(x) - parseFloat(y)); }
      return sign * (x < y ? -1 : x > y ? 1 : 0);  /* code-point order: the same in every locale */
    });
    rows.forEach(function (r) { body.appendChild(r); });
    announce(table.caption.textContent.split(":")[0] + ": sorted by " + th.textContent.trim() + ", " + dir + ".");
  }
  Array.prototype.forEach.call(document.querySelectorAll("table.board"), function (table) {
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th) {
      var button = th.querySelector("button");
      if (button) { button.addEventListener("click", function () { sortTable(table, th); }); }
    });
  });

  /* -- search and filters --------------------------------------------------------------------- */
  var search = document.getElementById("search");
  var selects = Array.prototype.slice.call(document.querySelectorAll("select[data-filter]"));
  function applyFilters() {
    var query = search ? search.value.trim().toLowerCase() : "";
    var shown = 0, total = 0;
    Array.prototype.forEach.call(document.querySelectorAll("section.board"), function (section) {
      var visible = 0;
      Array.prototype.forEach.call(section.querySelectorAll("tbody tr"), function (row) {
        total += 1;
        var ok = !query || row.textContent.toLowerCase().indexOf(query) !== -1;
        selects.forEach(function (s) {
          if (ok && s.value && row.getAttribute("data-" + s.getAttribute("data-filter")) !== s.value) { ok = false; }
        });
        row.hidden = !ok;
        if (ok) { visible += 1; }
      });
      section.hidden = visible === 0;
      shown += visible;
    });
    announce(shown + " of " + total + " rows shown.");
  }
  if (search) { search.addEventListener("input", applyFilters); }
  selects.forEach(function (s) { s.addEventListener("change", applyFilters); });

  /* -- tooltips on hover and keyboard focus (data-tip) ---------------------------------------- */
  var tip = document.getElementById("tip");
  function showTip(event) {
    var target = event.target.closest ? event.target.closest("[data-tip]") : null;
    if (!tip || !target) { return; }
    tip.textContent = target.getAttribute("data-tip");
    tip.hidden = false;
    var box = target.getBoundingClientRect();
    var left = Math.min(box.left + window.scrollX, window.scrollX + document.documentElement.clientWidth - tip.offsetWidth - 8);
    tip.style.left = Math.max(window.scrollX + 4, left) + "px";
    tip.style.top = (box.bottom + window.scrollY + 6) + "px";
  }
  function hideTip() { if (tip) { tip.hidden = true; } }
  document.addEventListener("mouseover", showTip);
  document.addEventListener("focusin", showTip);
  document.addEventListener("mouseout", function (event) {
    if (event.target.closest && event.target.closest("[data-tip]")) { hideTip(); }
  });
  document.addEventListener("focusout", hideTip);
  document.addEventListener("keydown", function (event) { if (event.key === "Escape") { hideTip(); } });
})();
