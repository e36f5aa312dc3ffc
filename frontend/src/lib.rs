//! p2law-frontend: the Leptos browser app (calculator, refit, calibration pages). Filled by the browser-calculator issue.
