/**
 * The application's name and its topics, in one place: the topology, the processors and the tests
 * import them from here (record types come with the schemas' generated types). Topics are prefixed with the application, so two applications never share one by accident.
 */
export const application = '{{application}}';

/** Input: one PageView per visit, keyed by page. */
export const pageViews = `${application}.page-views`;
/** Output of count-views: the running count of each page, keyed by page. */
export const pageCounts = `${application}.page-counts`;

