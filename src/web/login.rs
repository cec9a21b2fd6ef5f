//! The login page; the script posts to `/api/login`.

use super::layout::{page, Viewer};
use super::{html, PageResult};
use maud::html;

pub async fn login() -> PageResult {
    let body = html! {
        form #login-form {
            label { "User " input name="user" autocomplete="username" required; }
            label { "Password " input name="password" type="password" autocomplete="current-password" required; }
            button type="submit" { "Log in" }
            p.status {}
        }
    };
    html(page("Log in", Viewer(None), false, body))
}
