package api

import (
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/socketd/socketd"
)

// A socket's ETag names the version of its definition, its updated_at in
// nanoseconds: a PUT with If-Match replaces that version only, so that an
// edit made from what a client read does not overwrite a change made
// since (socketctl edit does this). The live status is not part of it.

// setETag sets the ETag of socket s's definition on w.
func setETag(w http.ResponseWriter, s socketd.Socket) {
	w.Header().Set("ETag", etag(s.UpdatedAt))
}

func etag(updated time.Time) string {
	return `"` + strconv.FormatInt(updated.UnixNano(), 10) + `"`
}

// ifMatch reads the If-Match header of a request for socket name: the
// version it names and true, or false without one. "*" is a bad request
// (an edit must name the version it began from); anything else that is
// not an ETag of this server's is a precondition failed.
func ifMatch(r *http.Request, name string) (time.Time, bool, error) {
	v := strings.TrimSpace(r.Header.Get("If-Match"))
	if v == "" {
		return time.Time{}, false, nil
	}
	if v == "*" {
		return time.Time{}, false, socketd.Errorf(socketd.CodeBadRequest,
			`If-Match: * is not taken: send the ETag of the version the change was made from`)
	}
	n, err := strconv.ParseInt(strings.Trim(strings.TrimPrefix(v, "W/"), `"`), 10, 64)
	if err != nil || !strings.HasPrefix(v, `"`) {
		return time.Time{}, false, socketd.Errorf(socketd.CodePreconditionFailed,
			"If-Match %s is not an ETag of socket %q", v, name)
	}
	return time.Unix(0, n).UTC(), true, nil
}
