// Inside Atlassian's iframe, the page-load token may have expired by the time the code is typed:
// fetch a fresh context token from the Connect bridge and send it with the form.
document.addEventListener("DOMContentLoaded", function () {
  var form = document.getElementById("account-code-form");
  if (!form) return;
  form.addEventListener("submit", function (event) {
    if (!window.AP || !AP.context || form.dataset.fresh) return;
    event.preventDefault();
    AP.context.getToken(function (token) {
      form.action = "?jwt=" + encodeURIComponent(token);
      form.dataset.fresh = "1";
      form.submit();
    });
  });
});
