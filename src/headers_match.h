/* headers_match.h - INTERIM: headers exchange matching (being replaced). */
#ifndef WARREN_HEADERS_MATCH_H
#define WARREN_HEADERS_MATCH_H
#include "bytes.h"
bool headers_match(wn_bytes_t binding_args, wn_bytes_t message_headers);
int headers_check_binding_args(wn_bytes_t args, char *err, size_t errlen);
#endif
