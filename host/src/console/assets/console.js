// Keyward console: progressive enhancement only. Every page works without this file.
"use strict";
document.addEventListener("DOMContentLoaded", function () {
  // "Select all" checkboxes on lists with batch actions.
  document.querySelectorAll("input[data-select-all]").forEach(function (all) {
    all.hidden = false;
    all.addEventListener("change", function () {
      document.querySelectorAll("input[name='" + all.dataset.selectAll + "']").forEach(function (box) {
        box.checked = all.checked;
      });
    });
  });
  // The key/value editor: another empty row on demand (the page already has a few).
  document.querySelectorAll("button[data-add-row]").forEach(function (button) {
    button.hidden = false;
    button.addEventListener("click", function () {
      var rows = document.getElementById(button.dataset.addRow);
      var last = rows.lastElementChild;
      var copy = last.cloneNode(true);
      copy.querySelectorAll("input").forEach(function (i) { i.value = ""; });
      rows.appendChild(copy);
      copy.querySelector("input").focus();
    });
  });
});
