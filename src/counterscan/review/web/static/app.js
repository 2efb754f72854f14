// Keyboard review for the queue and suspect pages: j/k move, c/l/u decide, x selects, o opens.
(function () {
  "use strict";
  const VERDICT_KEYS = { c: "counterfeit", l: "legit", u: "unsure" };

  function typing(event) {
    const el = event.target;
    return el && (el.isContentEditable || ["INPUT", "SELECT", "TEXTAREA"].includes(el.tagName));
  }

  function queuePage(table) {
    const rows = Array.from(table.querySelectorAll("tbody tr"));
    const focusInput = document.getElementById("focus");
    const counter = document.getElementById("selected-count");
    let index = Math.min(parseInt(table.dataset.focus || "0", 10) || 0, rows.length - 1);

    function show() {
      rows.forEach((row, i) => row.classList.toggle("focused", i === index));
      if (rows[index]) rows[index].scrollIntoView({ block: "nearest" });
      if (focusInput) focusInput.value = String(index);
    }
    function count() {
      const ticked = rows.filter((row) => row.querySelector("input[name=key]").checked);
      rows.forEach((row) => row.classList.toggle("selected", row.querySelector("input[name=key]").checked));
      if (counter) counter.textContent = String(ticked.length);
    }
    table.addEventListener("change", count);
    const all = document.getElementById("select-all");
    if (all) all.addEventListener("change", () => {
      rows.forEach((row) => { row.querySelector("input[name=key]").checked = all.checked; });
      count();
    });
    document.addEventListener("keydown", (event) => {
      if (typing(event) || event.ctrlKey || event.metaKey || event.altKey || !rows.length) return;
      const key = event.key;
      if (key === "j") index = Math.min(index + 1, rows.length - 1);
      else if (key === "k") index = Math.max(index - 1, 0);
      else if (key === "x") {
        const box = rows[index].querySelector("input[name=key]");
        box.checked = !box.checked;
        count();
      } else if (key === "o" || key === "Enter") window.location.href = rows[index].dataset.href;
      else if (VERDICT_KEYS[key]) {
        const button = rows[index].querySelector(`button[name=pick][value^="${VERDICT_KEYS[key]}|"]`);
        if (button) button.click();
        return;
      } else return;
      event.preventDefault();
      show();
    });
    show();
    count();
  }

  function suspectPage(head) {
    document.addEventListener("keydown", (event) => {
      if (typing(event) || event.ctrlKey || event.metaKey || event.altKey) return;
      if (event.key === "j" && head.dataset.next) window.location.href = head.dataset.next;
      else if (event.key === "k" && head.dataset.prev) window.location.href = head.dataset.prev;
      else if (VERDICT_KEYS[event.key]) document.getElementById("verdict-" + VERDICT_KEYS[event.key]).click();
      else return;
      event.preventDefault();
    });
  }

  document.addEventListener("DOMContentLoaded", () => {
    const table = document.getElementById("queue");
    if (table) queuePage(table);
    const head = document.getElementById("suspect");
    if (head) suspectPage(head);
  });
})();
