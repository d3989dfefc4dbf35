/* The tagging rules: a line-oriented parser, a small expression tree and its
 * evaluation; see rules.h. */
#include "tags/rules.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/xalloc.h"
#include "matcher/bitset.h"
#include "tags/date.h"
#include "tags/uscc.h"

enum { F_USCC, F_REGION, F_DISTRICT, F_INDUSTRY, F_EMPLOYEES, F_REVENUE, F_AGE, F_ENTITY, F_N };
static const char *const rules_fields[F_N] = {"uscc",      "region",      "district", "industry",
                                              "employees", "revenue_10k", "age",      "entity"};

enum { N_NUM, N_STR, N_FIELD, N_NOT, N_AND, N_OR, N_CMP, N_HAS, N_HAS_CLASS, N_KNOWN, N_QUAL };
enum { OP_EQ, OP_NE, OP_LT, OP_LE, OP_GT, OP_GE, OP_PREFIX };

typedef struct node {
    int kind;
    int op;
    double num;
    char *str;
    int field;
    int a, b;
    int bit;   /* N_HAS, N_QUAL */
    int klass; /* N_HAS_CLASS: index into class masks */
} node_t;

enum { R_WHEN, R_LOOKUP, R_PREFIX, R_QUALS };

typedef struct rule {
    char *name;
    int kind;
    int bit;   /* R_WHEN */
    int expr;  /* R_WHEN */
    int klass; /* R_LOOKUP, R_PREFIX */
    int field; /* R_LOOKUP, R_PREFIX */
} rule_def_t;

typedef struct let {
    char *name;
    int expr;
} let_t;

struct rules {
    const taxonomy_t *tax;
    unsigned ntags;
    size_t words;
    node_t *nodes;
    size_t nnodes, capnodes;
    rule_def_t *rules;
    size_t nrules, caprules;
    let_t *lets;
    size_t nlets, caplets;
    uint8_t *validity; /* years per tag, 0 = unlimited */
    /* class masks, in taxonomy class order */
    uint64_t *class_mask;
    unsigned nclasses;
};

/* ---------------------------------------------------------------------------
 * Lexer
 * ------------------------------------------------------------------------- */

enum { T_END, T_IDENT, T_NUM, T_STR, T_OP, T_ERR };

typedef struct lex {
    const char *p, *end;
    int tok;
    char text[128];
    double num;
} lex_t;

static int lex_identch(char c) {
    return isalnum((unsigned char)c) || c == '_' || c == '.' || c == '-';
}

static void lex_next(lex_t *l) {
    while (l->p < l->end && (*l->p == ' ' || *l->p == '\t')) {
        l->p++;
    }
    if (l->p >= l->end || *l->p == '#') {
        l->tok = T_END;
        return;
    }
    char c = *l->p;
    if (c == '"') {
        const char *s = ++l->p;
        while (l->p < l->end && *l->p != '"') {
            l->p++;
        }
        size_t n = (size_t)(l->p - s);
        if (l->p >= l->end || n >= sizeof l->text) {
            l->tok = T_ERR;
            return;
        }
        memcpy(l->text, s, n);
        l->text[n] = '\0';
        l->p++;
        l->tok = T_STR;
        return;
    }
    if (isdigit((unsigned char)c)) {
        char *e = NULL;
        l->num = strtod(l->p, &e);
        /* A number glued to letters ("3y") is read as a word instead. */
        if (e < l->end && lex_identch(*e) && *e != '.') {
            goto ident;
        }
        l->p = e;
        l->tok = T_NUM;
        return;
    }
    if (isalpha((unsigned char)c) || c == '_') {
    ident:;
        const char *s = l->p;
        while (l->p < l->end && lex_identch(*l->p)) {
            l->p++;
        }
        size_t n = (size_t)(l->p - s);
        if (n >= sizeof l->text) {
            l->tok = T_ERR;
            return;
        }
        memcpy(l->text, s, n);
        l->text[n] = '\0';
        l->tok = T_IDENT;
        return;
    }
    static const char *const ops[] = {"&&", "||", "==", "!=", "<=", ">=", "^=", "<",
                                      ">",  "!",  "(",  ")",  ",",  ":",  "="};
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++) {
        size_t n = strlen(ops[i]);
        if ((size_t)(l->end - l->p) >= n && memcmp(l->p, ops[i], n) == 0) {
            memcpy(l->text, ops[i], n + 1);
            l->p += n;
            l->tok = T_OP;
            return;
        }
    }
    l->tok = T_ERR;
}

static int lex_is(const lex_t *l, int tok, const char *text) {
    return l->tok == tok && (text == NULL || strcmp(l->text, text) == 0);
}

/* ---------------------------------------------------------------------------
 * Parser
 * ------------------------------------------------------------------------- */

typedef struct parser {
    rules_t *r;
    lex_t lx;
    unsigned line;
    char *err;
    size_t errlen;
    int failed;
} parser_t;

static int perr(parser_t *ps, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int perr(parser_t *ps, const char *fmt, ...) {
    if (!ps->failed && ps->errlen) {
        int n = snprintf(ps->err, ps->errlen, "line %u: ", ps->line);
        if (n > 0 && (size_t)n < ps->errlen) {
            va_list ap;
            va_start(ap, fmt);
            vsnprintf(ps->err + n, ps->errlen - (size_t)n, fmt, ap);
            va_end(ap);
        }
    }
    ps->failed = 1;
    return -1;
}

static int node_new(rules_t *r, int kind) {
    if (r->nnodes == r->capnodes) {
        r->capnodes = r->capnodes ? r->capnodes * 2 : 64;
        r->nodes = xreallocarray(r->nodes, r->capnodes, sizeof *r->nodes);
    }
    node_t *n = &r->nodes[r->nnodes];
    memset(n, 0, sizeof *n);
    n->kind = kind;
    n->a = n->b = -1;
    return (int)r->nnodes++;
}

static int rules_field(const char *name) {
    for (int i = 0; i < F_N; i++) {
        if (strcmp(rules_fields[i], name) == 0) {
            return i;
        }
    }
    return -1;
}

static int rules_class(const rules_t *r, const char *code) {
    for (unsigned i = 0; i < r->nclasses; i++) {
        if (strcmp(taxonomy_class_at(r->tax, TAX_ENTERPRISE, i)->code, code) == 0) {
            return (int)i;
        }
    }
    return -1;
}

static int rules_tag(const rules_t *r, const char *code) {
    return taxonomy_find(r->tax, TAX_ENTERPRISE, code, strlen(code));
}

static int parse_or(parser_t *ps);

static int parse_call(parser_t *ps, const char *fn) {
    rules_t *r = ps->r;
    lex_next(&ps->lx); /* '(' */
    lex_next(&ps->lx);
    char arg[128];
    int is_str = ps->lx.tok == T_STR;
    if (ps->lx.tok != T_STR && ps->lx.tok != T_IDENT) {
        return perr(ps, "%s() takes one argument", fn);
    }
    snprintf(arg, sizeof arg, "%s", ps->lx.text);
    lex_next(&ps->lx);
    if (!lex_is(&ps->lx, T_OP, ")")) {
        return perr(ps, "expected ')' after the argument of %s()", fn);
    }
    lex_next(&ps->lx);
    int n;
    if (strcmp(fn, "has") == 0 || strcmp(fn, "qual") == 0) {
        int bit = rules_tag(r, arg);
        if (!is_str || bit < 0) {
            return perr(ps, "%s(\"%s\"): not an enterprise tag code", fn, arg);
        }
        n = node_new(r, fn[0] == 'h' ? N_HAS : N_QUAL);
        r->nodes[n].bit = bit;
        return n;
    }
    if (strcmp(fn, "has_class") == 0) {
        int k = rules_class(r, arg);
        if (!is_str || k < 0) {
            return perr(ps, "has_class(\"%s\"): not an enterprise tag class", arg);
        }
        n = node_new(r, N_HAS_CLASS);
        r->nodes[n].klass = k;
        return n;
    }
    if (strcmp(fn, "known") == 0) {
        int f = rules_field(arg);
        if (f < 0) {
            return perr(ps, "known(%s): not a field", arg);
        }
        n = node_new(r, N_KNOWN);
        r->nodes[n].field = f;
        return n;
    }
    return perr(ps, "unknown function %s()", fn);
}

static int parse_primary(parser_t *ps) {
    rules_t *r = ps->r;
    lex_t *lx = &ps->lx;
    if (lex_is(lx, T_OP, "(")) {
        lex_next(lx);
        int e = parse_or(ps);
        if (e < 0) {
            return -1;
        }
        if (!lex_is(lx, T_OP, ")")) {
            return perr(ps, "expected ')'");
        }
        lex_next(lx);
        return e;
    }
    if (lx->tok == T_NUM) {
        int n = node_new(r, N_NUM);
        r->nodes[n].num = lx->num;
        lex_next(lx);
        return n;
    }
    if (lx->tok == T_STR) {
        int n = node_new(r, N_STR);
        r->nodes[n].str = xstrdup(lx->text);
        lex_next(lx);
        return n;
    }
    if (lx->tok == T_IDENT) {
        char name[128];
        snprintf(name, sizeof name, "%s", lx->text);
        const char *save = lx->p;
        lex_next(lx);
        if (lex_is(lx, T_OP, "(")) {
            lx->p = save;
            lx->tok = T_OP;
            return parse_call(ps, name);
        }
        int f = rules_field(name);
        if (f >= 0) {
            int n = node_new(r, N_FIELD);
            r->nodes[n].field = f;
            return n;
        }
        for (size_t i = 0; i < r->nlets; i++) {
            if (strcmp(r->lets[i].name, name) == 0) {
                return r->lets[i].expr;
            }
        }
        return perr(ps, "unknown name '%s' (not a field or a let)", name);
    }
    return perr(ps, "expected a value");
}

static int parse_cmp(parser_t *ps) {
    int a = parse_primary(ps);
    if (a < 0) {
        return -1;
    }
    static const char *const ops[] = {"==", "!=", "<", "<=", ">", ">=", "^="};
    for (int i = 0; i < 7; i++) {
        if (lex_is(&ps->lx, T_OP, ops[i])) {
            lex_next(&ps->lx);
            int b = parse_primary(ps);
            if (b < 0) {
                return -1;
            }
            int n = node_new(ps->r, N_CMP);
            ps->r->nodes[n].op = i;
            ps->r->nodes[n].a = a;
            ps->r->nodes[n].b = b;
            return n;
        }
    }
    return a;
}

static int parse_not(parser_t *ps) {
    if (lex_is(&ps->lx, T_OP, "!")) {
        lex_next(&ps->lx);
        int a = parse_not(ps);
        if (a < 0) {
            return -1;
        }
        int n = node_new(ps->r, N_NOT);
        ps->r->nodes[n].a = a;
        return n;
    }
    return parse_cmp(ps);
}

static int parse_and(parser_t *ps) {
    int a = parse_not(ps);
    while (a >= 0 && lex_is(&ps->lx, T_OP, "&&")) {
        lex_next(&ps->lx);
        int b = parse_not(ps);
        if (b < 0) {
            return -1;
        }
        int n = node_new(ps->r, N_AND);
        ps->r->nodes[n].a = a;
        ps->r->nodes[n].b = b;
        a = n;
    }
    return a;
}

static int parse_or(parser_t *ps) {
    int a = parse_and(ps);
    while (a >= 0 && lex_is(&ps->lx, T_OP, "||")) {
        lex_next(&ps->lx);
        int b = parse_and(ps);
        if (b < 0) {
            return -1;
        }
        int n = node_new(ps->r, N_OR);
        ps->r->nodes[n].a = a;
        ps->r->nodes[n].b = b;
        a = n;
    }
    return a;
}

static int parse_expr_line(parser_t *ps) {
    int e = parse_or(ps);
    if (e >= 0 && ps->lx.tok != T_END) {
        return perr(ps, "unexpected '%s' after the expression", ps->lx.text);
    }
    return e;
}

static int parse_rule(parser_t *ps) {
    rules_t *r = ps->r;
    lex_t *lx = &ps->lx;
    lex_next(lx);
    if (lx->tok != T_IDENT) {
        return perr(ps, "a rule needs a name");
    }
    char name[128];
    snprintf(name, sizeof name, "%s", lx->text);
    for (size_t i = 0; i < r->nrules; i++) {
        if (strcmp(r->rules[i].name, name) == 0) {
            return perr(ps, "rule '%s' defined twice", name);
        }
    }
    lex_next(lx);
    if (!lex_is(lx, T_OP, ":")) {
        return perr(ps, "expected ':' after the rule name");
    }
    lex_next(lx);
    rule_def_t d = {0};
    d.bit = d.expr = d.klass = d.field = -1;
    if (lex_is(lx, T_IDENT, "lookup") || lex_is(lx, T_IDENT, "prefix")) {
        d.kind = lx->text[0] == 'l' ? R_LOOKUP : R_PREFIX;
        lex_next(lx);
        if (lx->tok != T_IDENT || (d.klass = rules_class(r, lx->text)) < 0) {
            return perr(ps, "'%s' is not an enterprise tag class", lx->text);
        }
        lex_next(lx);
        if (lx->tok != T_IDENT || (d.field = rules_field(lx->text)) < 0) {
            return perr(ps, "'%s' is not a field", lx->text);
        }
        lex_next(lx);
        if (lx->tok != T_END) {
            return perr(ps, "unexpected '%s' at the end of the rule", lx->text);
        }
    } else if (lex_is(lx, T_IDENT, "qualifications")) {
        d.kind = R_QUALS;
        lex_next(lx);
        if (lx->tok != T_END) {
            return perr(ps, "unexpected '%s' at the end of the rule", lx->text);
        }
    } else {
        d.kind = R_WHEN;
        if (lx->tok != T_IDENT || (d.bit = rules_tag(r, lx->text)) < 0) {
            return perr(ps, "'%s' is not an enterprise tag code", lx->text);
        }
        lex_next(lx);
        if (!lex_is(lx, T_IDENT, "when")) {
            return perr(ps, "expected 'when' after the tag");
        }
        lex_next(lx);
        if ((d.expr = parse_expr_line(ps)) < 0) {
            return -1;
        }
    }
    if (r->nrules == r->caprules) {
        r->caprules = r->caprules ? r->caprules * 2 : 32;
        r->rules = xreallocarray(r->rules, r->caprules, sizeof *r->rules);
    }
    d.name = xstrdup(name);
    r->rules[r->nrules++] = d;
    return 0;
}

static int parse_line(parser_t *ps) {
    rules_t *r = ps->r;
    lex_t *lx = &ps->lx;
    lex_next(lx);
    if (lx->tok == T_END) {
        return 0;
    }
    if (lex_is(lx, T_IDENT, "rule")) {
        return parse_rule(ps);
    }
    if (lex_is(lx, T_IDENT, "let")) {
        lex_next(lx);
        if (lx->tok != T_IDENT || rules_field(lx->text) >= 0) {
            return perr(ps, "let needs a new name");
        }
        char name[128];
        snprintf(name, sizeof name, "%s", lx->text);
        lex_next(lx);
        if (!lex_is(lx, T_OP, "=")) {
            return perr(ps, "expected '=' after the let name");
        }
        lex_next(lx);
        int e = parse_expr_line(ps);
        if (e < 0) {
            return -1;
        }
        if (r->nlets == r->caplets) {
            r->caplets = r->caplets ? r->caplets * 2 : 16;
            r->lets = xreallocarray(r->lets, r->caplets, sizeof *r->lets);
        }
        r->lets[r->nlets].name = xstrdup(name);
        r->lets[r->nlets].expr = e;
        r->nlets++;
        return 0;
    }
    if (lex_is(lx, T_IDENT, "validity")) {
        lex_next(lx);
        int bit = lx->tok == T_IDENT ? rules_tag(r, lx->text) : -1;
        if (bit < 0) {
            return perr(ps, "'%s' is not an enterprise tag code", lx->text);
        }
        lex_next(lx);
        int years = 0;
        if (lx->tok != T_IDENT || sscanf(lx->text, "%dy", &years) != 1 || years < 1 || years > 50 ||
            lx->text[strlen(lx->text) - 1] != 'y') {
            return perr(ps, "validity is written as a number of years, e.g. 3y");
        }
        r->validity[bit] = (uint8_t)years;
        lex_next(lx);
        return lx->tok == T_END ? 0 : perr(ps, "unexpected '%s'", lx->text);
    }
    return perr(ps, "expected rule, let or validity");
}

void rules_free(rules_t *r) {
    if (r == NULL) {
        return;
    }
    for (size_t i = 0; i < r->nnodes; i++) {
        free(r->nodes[i].str);
    }
    for (size_t i = 0; i < r->nrules; i++) {
        free(r->rules[i].name);
    }
    for (size_t i = 0; i < r->nlets; i++) {
        free(r->lets[i].name);
    }
    free(r->nodes);
    free(r->rules);
    free(r->lets);
    free(r->validity);
    free(r->class_mask);
    free(r);
}

int rules_parse(const char *buf, size_t len, const taxonomy_t *tax, rules_t **out, char *err,
                size_t errlen) {
    rules_t *r = xcalloc(1, sizeof *r);
    r->tax = tax;
    r->ntags = taxonomy_count(tax, TAX_ENTERPRISE);
    r->words = bitset_words(r->ntags);
    r->validity = xcalloc(r->ntags, 1);
    r->nclasses = taxonomy_class_count(tax, TAX_ENTERPRISE);
    r->class_mask = xcalloc((size_t)r->nclasses * r->words, sizeof *r->class_mask);
    for (unsigned i = 0; i < r->ntags; i++) {
        const tax_tag_t *t = taxonomy_tag(tax, TAX_ENTERPRISE, i);
        int k = rules_class(r, t->klass->code);
        bitset_set(r->class_mask + (size_t)k * r->words, i);
    }
    parser_t ps = {.r = r, .err = err, .errlen = errlen};
    size_t pos = 0;
    while (pos < len && !ps.failed) {
        ps.line++;
        size_t end = pos;
        while (end < len && buf[end] != '\n') {
            end++;
        }
        size_t lend = end;
        if (lend > pos && buf[lend - 1] == '\r') {
            lend--;
        }
        ps.lx.p = buf + pos;
        ps.lx.end = buf + lend;
        if (parse_line(&ps) != 0 && !ps.failed) {
            perr(&ps, "syntax error");
        }
        if (!ps.failed && ps.lx.tok == T_ERR) {
            perr(&ps, "unreadable token");
        }
        pos = end + 1;
    }
    if (!ps.failed && r->nrules == 0) {
        ps.line = 0;
        perr(&ps, "no rules");
    }
    if (ps.failed) {
        rules_free(r);
        return -EINVAL;
    }
    *out = r;
    return 0;
}

unsigned rules_count(const rules_t *r) {
    return (unsigned)r->nrules;
}

const char *rules_rule_name(const rules_t *r, unsigned i) {
    return i < r->nrules ? r->rules[i].name : "?";
}

int rules_validity_years(const rules_t *r, unsigned bit) {
    return bit < r->ntags ? r->validity[bit] : 0;
}

/* ---------------------------------------------------------------------------
 * Evaluation
 * ------------------------------------------------------------------------- */

enum { V_MISSING, V_NUM, V_STR, V_BOOL };

typedef struct val {
    int t;
    double n;
    const char *s;
    int b;
} val_t;

typedef struct ctx {
    const rules_t *r;
    const rules_in_t *in;
    int32_t today;
    uint64_t *row;
    char district[8];
    const char *entity;
    int has_age;
    double age;
} ctx_t;

static val_t field_val(const ctx_t *c, int f) {
    val_t v = {V_MISSING, 0, NULL, 0};
    const rules_in_t *in = c->in;
    switch (f) {
    case F_USCC:
        v.t = V_STR;
        v.s = in->uscc;
        break;
    case F_REGION:
        if (in->region) {
            v.t = V_STR;
            v.s = in->region;
        }
        break;
    case F_DISTRICT:
        if (c->district[0]) {
            v.t = V_STR;
            v.s = c->district;
        }
        break;
    case F_INDUSTRY:
        if (in->industry) {
            v.t = V_STR;
            v.s = in->industry;
        }
        break;
    case F_EMPLOYEES:
        if (in->has_employees) {
            v.t = V_NUM;
            v.n = in->employees;
        }
        break;
    case F_REVENUE:
        if (in->has_revenue) {
            v.t = V_NUM;
            v.n = in->revenue_10k;
        }
        break;
    case F_AGE:
        if (c->has_age) {
            v.t = V_NUM;
            v.n = c->age;
        }
        break;
    case F_ENTITY:
        v.t = V_STR;
        v.s = c->entity;
        break;
    default:
        break;
    }
    return v;
}

static int cmp_vals(int op, val_t a, val_t b) {
    if (a.t == V_NUM && b.t == V_NUM) {
        switch (op) {
        case OP_EQ:
            return a.n == b.n;
        case OP_NE:
            return a.n != b.n;
        case OP_LT:
            return a.n < b.n;
        case OP_LE:
            return a.n <= b.n;
        case OP_GT:
            return a.n > b.n;
        case OP_GE:
            return a.n >= b.n;
        default:
            return 0;
        }
    }
    if (a.t == V_STR && b.t == V_STR) {
        int d = strcmp(a.s, b.s);
        switch (op) {
        case OP_EQ:
            return d == 0;
        case OP_NE:
            return d != 0;
        case OP_LT:
            return d < 0;
        case OP_LE:
            return d <= 0;
        case OP_GT:
            return d > 0;
        case OP_GE:
            return d >= 0;
        case OP_PREFIX:
            return strncmp(a.s, b.s, strlen(b.s)) == 0;
        default:
            return 0;
        }
    }
    return 0;
}

static val_t eval(const ctx_t *c, int n) {
    const node_t *nd = &c->r->nodes[n];
    val_t v = {V_BOOL, 0, NULL, 0};
    switch (nd->kind) {
    case N_NUM:
        v.t = V_NUM;
        v.n = nd->num;
        return v;
    case N_STR:
        v.t = V_STR;
        v.s = nd->str;
        return v;
    case N_FIELD:
        return field_val(c, nd->field);
    case N_NOT: {
        val_t a = eval(c, nd->a);
        v.b = !(a.t == V_BOOL && a.b);
        return v;
    }
    case N_AND: {
        val_t a = eval(c, nd->a);
        v.b = a.t == V_BOOL && a.b;
        if (v.b) {
            val_t b = eval(c, nd->b);
            v.b = b.t == V_BOOL && b.b;
        }
        return v;
    }
    case N_OR: {
        val_t a = eval(c, nd->a);
        v.b = a.t == V_BOOL && a.b;
        if (!v.b) {
            val_t b = eval(c, nd->b);
            v.b = b.t == V_BOOL && b.b;
        }
        return v;
    }
    case N_CMP:
        v.b = cmp_vals(nd->op, eval(c, nd->a), eval(c, nd->b));
        return v;
    case N_HAS:
        v.b = bitset_test(c->row, (unsigned)nd->bit);
        return v;
    case N_HAS_CLASS: {
        const uint64_t *m = c->r->class_mask + (size_t)nd->klass * c->r->words;
        for (size_t w = 0; w < c->r->words; w++) {
            v.b |= (c->row[w] & m[w]) != 0;
        }
        return v;
    }
    case N_KNOWN:
        v.b = field_val(c, nd->field).t != V_MISSING;
        return v;
    case N_QUAL:
        for (unsigned i = 0; i < c->in->nquals; i++) {
            if (c->in->quals[i].bit == nd->bit &&
                rules_qual_valid(c->r, &c->in->quals[i], c->today)) {
                v.b = 1;
                break;
            }
        }
        return v;
    default:
        return v;
    }
}

static int32_t qual_end(const rules_t *r, const rules_qual_t *q) {
    if (q->expires != DATE_NONE) {
        return q->expires;
    }
    int years = rules_validity_years(r, q->bit);
    if (q->issued != DATE_NONE && years > 0) {
        /* A certificate issued on 2023-11-06 for 3 years is in force through
         * 2026-11-05. */
        return date_add_years(q->issued, years) - 1;
    }
    return DATE_NONE;
}

int rules_qual_valid(const rules_t *r, const rules_qual_t *q, int32_t today) {
    if (q->issued != DATE_NONE && q->issued > today) {
        return 0;
    }
    int32_t end = qual_end(r, q);
    return end == DATE_NONE || today <= end;
}

typedef struct srcinfo {
    uint8_t kind;
    uint16_t rule;
} srcinfo_t;

static void derive_set(ctx_t *c, srcinfo_t *src, unsigned bit, uint8_t kind, uint16_t rule) {
    if (bit >= c->r->ntags || bitset_test(c->row, bit)) {
        return;
    }
    bitset_set(c->row, bit);
    src[bit].kind = kind;
    src[bit].rule = rule;
}

static void derive_rule(ctx_t *c, srcinfo_t *src, unsigned i) {
    const rule_def_t *d = &c->r->rules[i];
    const taxonomy_t *tax = c->r->tax;
    if (d->kind == R_WHEN) {
        val_t v = eval(c, d->expr);
        if (v.t == V_BOOL && v.b) {
            derive_set(c, src, (unsigned)d->bit, RULES_SRC_RULE, (uint16_t)i);
        }
        return;
    }
    if (d->kind == R_QUALS) {
        for (unsigned q = 0; q < c->in->nquals; q++) {
            if (rules_qual_valid(c->r, &c->in->quals[q], c->today)) {
                derive_set(c, src, c->in->quals[q].bit, RULES_SRC_RULE, (uint16_t)i);
            }
        }
        return;
    }
    val_t f = field_val(c, d->field);
    if (f.t != V_STR) {
        return;
    }
    const uint64_t *m = c->r->class_mask + (size_t)d->klass * c->r->words;
    for (size_t w = 0; w < c->r->words; w++) {
        uint64_t bits = m[w];
        while (bits) {
            unsigned b = (unsigned)(w * 64 + (size_t)__builtin_ctzll(bits));
            bits &= bits - 1;
            const char *ref = taxonomy_tag(tax, TAX_ENTERPRISE, b)->ref;
            size_t rl = strlen(ref);
            if (rl == 0) {
                continue;
            }
            if ((d->kind == R_LOOKUP && strcmp(ref, f.s) == 0) ||
                (d->kind == R_PREFIX && strncmp(f.s, ref, rl) == 0)) {
                derive_set(c, src, b, RULES_SRC_RULE, (uint16_t)i);
                if (d->kind == R_LOOKUP) {
                    return;
                }
            }
        }
    }
}

static int32_t derive_next_change(const rules_t *r, const rules_in_t *in, int32_t today) {
    int32_t next = DATE_NONE;
    if (in->founded != DATE_NONE && in->founded <= today) {
        int age = date_years_between(in->founded, today);
        next = date_add_years(in->founded, age + 1);
        /* date_add_years clamps 29 Feb to 28 Feb, which is before the anniversary
         * date_years_between counts; re-tag a day late rather than early. */
        if (date_years_between(in->founded, next) <= age) {
            next++;
        }
    }
    for (unsigned i = 0; i < in->nquals; i++) {
        const rules_qual_t *q = &in->quals[i];
        int32_t when = DATE_NONE;
        if (q->issued != DATE_NONE && q->issued > today) {
            when = q->issued;
        } else {
            int32_t end = qual_end(r, q);
            if (end != DATE_NONE && end >= today) {
                when = end + 1;
            }
        }
        if (when != DATE_NONE && (next == DATE_NONE || when < next)) {
            next = when;
        }
    }
    return next;
}

void rules_derive(const rules_t *r, const rules_in_t *in, int32_t today, rules_out_t *out) {
    memset(out->row, 0, sizeof out->row);
    ctx_t c = {.r = r, .in = in, .today = today, .row = out->row};
    /* On the stack and not cleared: an entry is read only for a bit that is set,
     * and every way a bit gets set (derive_set, an override) writes its entry. It
     * was a calloc (1.3 KiB for 330 tags), and one that size makes glibc's malloc
     * consolidate its free lists on every call: 2.3% of huiqid's time in an import
     * (perf). The stack cost is fixed at 16 KiB whatever the tag count; every caller
     * runs on a thread with a default (megabytes) stack. */
    _Static_assert(TAX_MAX_TAGS * sizeof(srcinfo_t) <= 16384, "rules_derive's stack scratch");
    srcinfo_t src[TAX_MAX_TAGS];
    if (in->region && strlen(in->region) < sizeof c.district) {
        strcpy(c.district, in->region);
    } else if (!in->region) {
        /* Positions 3-8 of the credit code are the registering division. */
        int digits = 1;
        for (int i = 2; i < 8; i++) {
            digits &= in->uscc[i] >= '0' && in->uscc[i] <= '9';
        }
        if (digits) {
            memcpy(c.district, in->uscc + 2, 6);
            c.district[6] = '\0';
        }
    }
    static const char *const entities[] = {"other", "company", "individual", "cooperative"};
    c.entity = entities[uscc_entity(in->uscc)];
    if (in->founded != DATE_NONE) {
        c.has_age = 1;
        c.age = date_years_between(in->founded, today);
    }
    for (unsigned i = 0; i < in->nexplicit; i++) {
        derive_set(&c, src, in->explicit_tags[i], RULES_SRC_EXPLICIT, 0);
    }
    for (unsigned i = 0; i < r->nrules; i++) {
        derive_rule(&c, src, i);
    }
    for (unsigned i = 0; i < in->noverrides; i++) {
        unsigned b = in->overrides[i].bit;
        if (b >= r->ntags) {
            continue;
        }
        if (in->overrides[i].value) {
            bitset_set(out->row, b);
            src[b].kind = RULES_SRC_OVERRIDE;
            src[b].rule = 0;
        } else {
            bitset_clear(out->row, b);
        }
    }
    out->nsrc = 0;
    for (size_t w = 0; w < r->words; w++) {
        uint64_t bits = out->row[w];
        while (bits) {
            unsigned b = (unsigned)(w * 64 + (size_t)__builtin_ctzll(bits));
            bits &= bits - 1;
            rules_src_t *s = &out->src[out->nsrc++];
            s->bit = (uint16_t)b;
            s->kind = src[b].kind;
            s->rule = src[b].rule;
        }
    }
    out->next_change = derive_next_change(r, in, today);
}

/* ---------------------------------------------------------------------------
 * Industry codes
 * ------------------------------------------------------------------------- */

static char rules_section_of(int division) {
    static const struct {
        int lo, hi;
        char s;
    } map[] = {{1, 5, 'A'},   {6, 12, 'B'},  {13, 43, 'C'}, {44, 46, 'D'}, {47, 50, 'E'},
               {51, 52, 'F'}, {53, 60, 'G'}, {61, 62, 'H'}, {63, 65, 'I'}, {66, 69, 'J'},
               {70, 70, 'K'}, {71, 72, 'L'}, {73, 75, 'M'}, {76, 79, 'N'}, {80, 82, 'O'},
               {83, 83, 'P'}, {84, 85, 'Q'}, {86, 90, 'R'}, {91, 96, 'S'}, {97, 97, 'T'}};
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++) {
        if (division >= map[i].lo && division <= map[i].hi) {
            return map[i].s;
        }
    }
    return 0;
}

int rules_industry_normalize(const char *in, size_t len, char *out) {
    char sec = 0;
    size_t i = 0;
    if (len && isalpha((unsigned char)in[0])) {
        sec = (char)toupper((unsigned char)in[0]);
        i = 1;
        if (sec < 'A' || sec > 'T') {
            return -EINVAL;
        }
    }
    /* A section letter alone is refused: the API documents "a section letter and
     * 2 to 4 digits", and a bare section says too little for the size rules. */
    size_t nd = len - i;
    if (nd < 2 || nd > 4) {
        return -EINVAL;
    }
    for (size_t k = i; k < len; k++) {
        if (!isdigit((unsigned char)in[k])) {
            return -EINVAL;
        }
    }
    int division = (in[i] - '0') * 10 + (in[i + 1] - '0');
    char want = rules_section_of(division);
    if (want == 0 || (sec && sec != want)) {
        return -EINVAL;
    }
    sec = want;
    out[0] = sec;
    memcpy(out + 1, in + i, nd);
    out[1 + nd] = '\0';
    return 0;
}
