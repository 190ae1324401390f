#!/usr/bin/env node
"use strict";
require("../launcher.cjs").run("pilot-gateway");
