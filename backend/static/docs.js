// Swagger UI on this server's /openapi.json. The API key saved on the generation page (same
// browser storage) goes with every request, the document's own fetch included; Authorize works too.
(function () {
  var key = localStorage.getItem("t2i.apiKey");
  window.ui = SwaggerUIBundle({
    url: "/openapi.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    persistAuthorization: true,
    requestInterceptor: function (request) {
      var headers = request.headers || (request.headers = {});
      if (key && !headers["X-API-Key"] && !headers.Authorization) headers["X-API-Key"] = key;
      return request;
    },
    onComplete: function () {
      if (key) window.ui.preauthorizeApiKey("apiKey", key);
    },
  });
})();
