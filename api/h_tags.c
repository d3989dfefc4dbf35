/* GET /v1/tags: the taxonomy, one vocabulary at a time. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/app.h"

static json_t *tags_render(const app_t *app, tax_vocab_t v, const char *klass) {
    json_t *root = json_object();
    json_object_set_new(root, "vocab", json_string(taxonomy_vocab_name(v)));
    json_t *classes = json_array();
    for (unsigned i = 0; i < taxonomy_class_count(app->tax, v); i++) {
        const tax_class_t *c = taxonomy_class_at(app->tax, v, i);
        if (klass && strcmp(klass, c->code) != 0) {
            continue;
        }
        json_t *o = json_object();
        json_object_set_new(o, "code", json_string(c->code));
        json_object_set_new(o, "name", json_string(c->name));
        json_object_set_new(o, "name_en", json_string(c->name_en));
        json_array_append_new(classes, o);
    }
    json_t *tags = json_array();
    for (unsigned i = 0; i < taxonomy_count(app->tax, v); i++) {
        const tax_tag_t *t = taxonomy_tag(app->tax, v, i);
        if (klass && strcmp(klass, t->klass->code) != 0) {
            continue;
        }
        json_t *o = json_object();
        json_object_set_new(o, "code", json_string(t->code));
        json_object_set_new(o, "name", json_string(t->name));
        json_object_set_new(o, "name_en", json_string(t->name_en));
        json_object_set_new(o, "class", json_string(t->klass->code));
        json_object_set_new(o, "class_name", json_string(t->klass->name));
        if (t->ref[0]) {
            json_object_set_new(o, "ref", json_string(t->ref));
        }
        json_array_append_new(tags, o);
    }
    json_object_set_new(root, "count", json_integer((json_int_t)json_array_size(tags)));
    json_object_set_new(root, "classes", classes);
    json_object_set_new(root, "tags", tags);
    return root;
}

void h_tags_list(app_t *app, api_req_t *req) {
    char vocab[32];
    char klass[64];
    int q = api_query(req, "vocab", vocab, sizeof vocab);
    int v = q > 0 ? taxonomy_vocab_parse(vocab, strlen(vocab)) : -1;
    if (v < 0) {
        api_error(req, 400, "invalid_parameter", "vocab",
                  "vocab must be enterprise or policy, e.g. /v1/tags?vocab=policy");
        return;
    }
    int kq = api_query(req, "class", klass, sizeof klass);
    if (kq < 0) {
        api_error(req, 400, "invalid_parameter", "class", "class is malformed");
        return;
    }
    if (kq > 0) {
        int known = 0;
        for (unsigned i = 0; i < taxonomy_class_count(app->tax, (tax_vocab_t)v); i++) {
            known |= strcmp(taxonomy_class_at(app->tax, (tax_vocab_t)v, i)->code, klass) == 0;
        }
        if (!known) {
            api_error(req, 400, "invalid_parameter", "class", "no class '%.60s' in vocabulary %s",
                      klass, vocab);
            return;
        }
        api_reply_json(req, 200, tags_render(app, (tax_vocab_t)v, klass), NULL);
        return;
    }
    if (app->tags_json[v] == NULL) {
        json_t *root = tags_render(app, (tax_vocab_t)v, NULL);
        app->tags_json[v] = json_dumps(root, JSON_COMPACT);
        json_decref(root);
    }
    server_respond(req, 200, "application/json", "Cache-Control: max-age=60\r\n", app->tags_json[v],
                   strlen(app->tags_json[v]));
}
