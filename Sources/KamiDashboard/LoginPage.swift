/// The sign-in page shown instead of the dashboard when a token is configured and the
/// browser has not presented it. The token travels only in the POST body (never in a URL);
/// the server answers with a cookie.
public enum LoginPage {
    /// The form, with `message` (a fixed sentence from the server, escaped anyway) above it.
    public static func render(message: String?) -> String {
        var out = DashboardPage.head(title: "Kami dashboard: sign in", refreshSeconds: nil)
        out += "<header><h1>Kami</h1><span class=\"meta\">dashboard</span></header><main><section>"
        out += "<h2>Sign in</h2>"
        if let message { out += "<p class=\"neg\" data-metric=\"login-message\">\(HTMLText.escape(message))</p>" }
        out += "<form method=\"post\" action=\"/dashboard/login\"><p><label for=\"token\">Dashboard token "
            + "(the contents of <code>dashboard_token_file</code>)</label></p>"
            + "<p><input id=\"token\" name=\"token\" type=\"password\" autocomplete=\"current-password\" required></p>"
            + "<p><button type=\"submit\">Sign in</button></p></form>"
        return out + "</section></main></body></html>\n"
    }
}
